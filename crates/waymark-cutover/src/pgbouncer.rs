//! The PgBouncer in front of the servers: its admin console (`PAUSE`,
//! `RESUME`, `RELOAD`, `SHOW DATABASES`) and the `[databases]` line of its
//! configuration file that says where a database's connections go.
//!
//! The console speaks only the simple query protocol, which is what sqlx
//! uses for `raw_sql`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use crate::error::CutoverError;

/// A PgBouncer and the database in it that the application uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgBouncer {
    /// The admin console's URL: `postgres://user@host:6432/pgbouncer`.
    pub admin: String,
    /// Its configuration file, whose `[databases]` section is rewritten.
    pub ini: PathBuf,
    /// The database's name in PgBouncer.
    pub database: String,
}

/// An open admin console.
pub(crate) struct Console {
    conn: PgConnection,
    database: String,
}

const CONSOLE_TIMEOUT: Duration = Duration::from_secs(5);

impl PgBouncer {
    /// Connects to the admin console.
    pub(crate) async fn console(&self) -> Result<Console, CutoverError> {
        let admin = waymark_db::redact(&self.admin);
        // PgBouncer refuses startup parameters it does not know unless told
        // to ignore them, and sqlx sends extra_float_digits by default.
        let options = PgConnectOptions::from_str(&self.admin)
            .map_err(|e| CutoverError::PgBouncer(format!("{admin}: {e}")))?
            .extra_float_digits(None);
        let conn = tokio::time::timeout(CONSOLE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| CutoverError::PgBouncer(format!("its console at {admin} did not answer within 5 s")))?
            .map_err(|e| CutoverError::PgBouncer(format!("cannot reach its console at {admin}: {e}")))?;
        Ok(Console {
            conn,
            database: self.database.clone(),
        })
    }

    /// Points the database at `url`'s server: rewrites its line in the
    /// configuration file (host, port and dbname; other settings on the
    /// line are kept), by a temporary file renamed over the old one.
    pub(crate) fn repoint(&self, url: &str) -> Result<(), CutoverError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| CutoverError::PgBouncer(format!("{}: {e}", waymark_db::redact(url))))?;
        let text = std::fs::read_to_string(&self.ini).map_err(|e| CutoverError::io(&self.ini, e))?;
        let new = rewrite(&text, &self.database, &options).ok_or_else(|| {
            CutoverError::PgBouncer(format!(
                "{} has no line for database {} in its [databases] section",
                self.ini.display(),
                self.database
            ))
        })?;
        write_beside(&self.ini, &new)
    }
}

impl Console {
    async fn run(&mut self, sql: &str) -> Result<(), CutoverError> {
        sqlx::raw_sql(sql)
            .execute(&mut self.conn)
            .await
            .map(drop)
            .map_err(|e| CutoverError::PgBouncer(format!("{sql}: {e}")))
    }

    /// Holds new transactions on the database; returns once every server
    /// connection is idle, so nothing is in flight.
    pub(crate) async fn pause(&mut self) -> Result<(), CutoverError> {
        let sql = format!("PAUSE {}", ident(&self.database));
        self.run(&sql).await
    }

    /// Lets transactions through again.
    pub(crate) async fn resume(&mut self) -> Result<(), CutoverError> {
        let sql = format!("RESUME {}", ident(&self.database));
        match self.run(&sql).await {
            // Resuming what is not paused is what a retry does.
            Err(CutoverError::PgBouncer(m)) if m.contains("not paused") => Ok(()),
            other => other,
        }
    }

    /// Rereads the configuration file.
    pub(crate) async fn reload(&mut self) -> Result<(), CutoverError> {
        self.run("RELOAD").await
    }

    /// The database's host, port and whether it is paused, from `SHOW
    /// DATABASES`; `None` if PgBouncer does not know it.
    pub(crate) async fn show(&mut self) -> Result<Option<(String, i32, bool)>, CutoverError> {
        let rows = sqlx::raw_sql("SHOW DATABASES")
            .fetch_all(&mut self.conn)
            .await
            .map_err(|e| CutoverError::PgBouncer(format!("SHOW DATABASES: {e}")))?;
        for row in rows {
            let name: String = row.try_get("name").unwrap_or_default();
            if name == self.database {
                let host: Option<String> = row.try_get("host").ok().flatten();
                let port: i32 = row.try_get("port").unwrap_or_default();
                let paused: i32 = row.try_get("paused").unwrap_or_default();
                return Ok(Some((host.unwrap_or_default(), port, paused != 0)));
            }
        }
        Ok(None)
    }

    pub(crate) async fn close(self) {
        let _ = self.conn.close().await;
    }
}

fn ident(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `text` with `database`'s line in `[databases]` pointing at `to`;
/// `None` if there is no such line.
fn rewrite(text: &str, database: &str, to: &PgConnectOptions) -> Option<String> {
    let mut section = String::new();
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed[1..trimmed.len() - 1].trim().to_ascii_lowercase();
        } else if section == "databases"
            && !found
            && let Some((key, value)) = trimmed.split_once('=')
            && key.trim() == database
        {
            found = true;
            let mut pairs: Vec<(String, String)> = split_pairs(value.trim())
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "host" | "port" | "dbname"))
                .collect();
            pairs.insert(0, ("host".into(), to.get_host().to_owned()));
            pairs.insert(1, ("port".into(), to.get_port().to_string()));
            if let Some(db) = to.get_database() {
                pairs.insert(2, ("dbname".into(), db.to_owned()));
            }
            let value: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
            out.push_str(&format!("{} = {}\n", key.trim(), value.join(" ")));
            continue;
        }
        out.push_str(line);
    }
    found.then_some(out)
}

/// `host=a port=5 application_name='x y'` as pairs, quotes removed.
fn split_pairs(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            return out;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == '=') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect();
        }
        out.push((key, value));
    }
}

fn quote(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| !c.is_whitespace() && c != '\'' && c != '\\') {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Replaces `path` with `text` by a temporary file beside it, keeping its
/// permissions.
fn write_beside(path: &Path, text: &str) -> Result<(), CutoverError> {
    let tmp = path.with_extension("waymark-tmp");
    let permissions = std::fs::metadata(path)
        .map_err(|e| CutoverError::io(path, e))?
        .permissions();
    std::fs::write(&tmp, text).map_err(|e| CutoverError::io(&tmp, e))?;
    std::fs::set_permissions(&tmp, permissions).map_err(|e| CutoverError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| CutoverError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_database_line() {
        let ini = "[databases]\n; app = host=old\nother = host=x port=1\napp = host=127.0.0.1 port=5433 dbname=app pool_size=5 application_name='a b'\n\n[pgbouncer]\napp = 1\n";
        let to = PgConnectOptions::from_str("postgres://u@10.0.0.2:5444/newdb").unwrap();
        let out = rewrite(ini, "app", &to).unwrap();
        assert_eq!(
            out,
            "[databases]\n; app = host=old\nother = host=x port=1\napp = host=10.0.0.2 port=5444 dbname=newdb pool_size=5 application_name='a b'\n\n[pgbouncer]\napp = 1\n"
        );
        assert!(rewrite(ini, "missing", &to).is_none());
    }
}
