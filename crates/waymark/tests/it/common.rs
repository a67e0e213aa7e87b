//! Test harness: a fresh database per test on each dialect, a folder of
//! migrations, and the real `waymark` binary.
//!
//! PostgreSQL and MariaDB are expected at 127.0.0.1 (override with
//! `WAYMARK_TEST_PG_URL` / `WAYMARK_TEST_MYSQL_URL`, pointing at a database
//! the test may connect to for creating others). A test that needs a server
//! fails loudly when it is missing; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use sqlx::Row;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_waymark");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
    Mysql,
}

/// A database that exists for one test and is dropped after it.
pub(crate) struct TestDb {
    pub(crate) kind: Kind,
    pub(crate) url: String,
    name: String,
    admin_url: String,
    _dir: Option<tempfile::TempDir>,
}

fn unique_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "wm_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn pg_admin() -> String {
    std::env::var("WAYMARK_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn mysql_admin() -> String {
    std::env::var("WAYMARK_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned())
}

fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let base = &base[..base.rfind('/').unwrap()];
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl TestDb {
    pub(crate) fn new(kind: Kind) -> TestDb {
        let name = unique_name();
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let file = dir.path().join(format!("{name}.db"));
                // A database that exists, as the servers' do: an empty file
                // is one, and the commands that only read refuse a missing one.
                std::fs::File::create(&file).unwrap();
                let url = format!("sqlite://{}", file.display());
                TestDb {
                    kind,
                    url,
                    name,
                    admin_url: String::new(),
                    _dir: Some(dir),
                }
            }
            Kind::Postgres => {
                let admin = pg_admin();
                block_on(async {
                    let pool = sqlx::PgPool::connect(&admin)
                        .await
                        .unwrap_or_else(|e| panic!("PostgreSQL is required at {admin}: {e}"));
                    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                        .execute(&pool)
                        .await
                        .unwrap();
                    pool.close().await;
                });
                TestDb {
                    kind,
                    url: with_database(&admin, &name),
                    name,
                    admin_url: admin,
                    _dir: None,
                }
            }
            Kind::Mysql => TestDb::mysql_at(&mysql_admin()),
        }
    }

    /// A new database on the MariaDB/MySQL server of `admin` (a URL the
    /// test may connect to for creating others).
    pub(crate) fn mysql_at(admin: &str) -> TestDb {
        let name = unique_name();
        let admin = admin.to_owned();
        block_on(async {
            let pool = sqlx::MySqlPool::connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("MariaDB/MySQL is required at {admin}: {e}"));
            sqlx::query(&format!("CREATE DATABASE `{name}`"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        });
        TestDb {
            kind: Kind::Mysql,
            url: with_database(&admin, &name),
            name,
            admin_url: admin,
            _dir: None,
        }
    }

    /// The database's name on its server.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs one query and returns every row's columns as text.
    pub(crate) fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        block_on(async {
            match self.kind {
                Kind::Postgres => {
                    let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                    let rows = sqlx::query(sql)
                        .fetch_all(&pool)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    pool.close().await;
                    rows.iter()
                        .map(|r| {
                            (0..r.len())
                                .map(|i| {
                                    r.try_get::<Option<String>, _>(i)
                                        .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| v.map(|v| v.to_string())))
                                        .or_else(|_| r.try_get::<Option<i32>, _>(i).map(|v| v.map(|v| v.to_string())))
                                        .unwrap()
                                })
                                .collect()
                        })
                        .collect()
                }
                Kind::Mysql => {
                    let pool = sqlx::MySqlPool::connect(&self.url).await.unwrap();
                    let rows = sqlx::query(sql)
                        .fetch_all(&pool)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    pool.close().await;
                    rows.iter()
                        .map(|r| (0..r.len()).map(|i| text_of_mysql(r, i)).collect())
                        .collect()
                }
                Kind::Sqlite => {
                    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", self.url))
                        .await
                        .unwrap();
                    let rows = sqlx::query(sql)
                        .fetch_all(&pool)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    pool.close().await;
                    rows.iter()
                        .map(|r| {
                            (0..r.len())
                                .map(|i| {
                                    r.try_get::<Option<String>, _>(i)
                                        .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| v.map(|v| v.to_string())))
                                        .unwrap()
                                })
                                .collect()
                        })
                        .collect()
                }
            }
        })
    }

    pub(crate) fn execute(&self, sql: &str) {
        block_on(async {
            match self.kind {
                Kind::Postgres => {
                    let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                    pool.close().await;
                }
                Kind::Mysql => {
                    let pool = sqlx::MySqlPool::connect(&self.url).await.unwrap();
                    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                    pool.close().await;
                }
                Kind::Sqlite => {
                    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", self.url))
                        .await
                        .unwrap();
                    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
                    pool.close().await;
                }
            }
        })
    }

    /// `column` as text, in this database's SQL, for comparing rows.
    pub(crate) fn text(&self, column: &str) -> String {
        match self.kind {
            Kind::Postgres => format!("{column}::text"),
            Kind::Mysql => format!("CAST({column} AS CHAR)"),
            Kind::Sqlite => format!("CAST({column} AS TEXT)"),
        }
    }

    /// Names of the user's tables, without waymark's own.
    pub(crate) fn tables(&self) -> Vec<String> {
        let sql = match self.kind {
            Kind::Postgres => {
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            }
            Kind::Mysql => {
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1"
            }
            Kind::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
            }
        };
        self.rows(sql)
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .filter(|t| !t.starts_with("waymark_history"))
            .collect()
    }

    /// The catalog as text: tables, columns, indexes, views, functions and
    /// triggers, without waymark's own tables. Two equal snapshots mean the
    /// schema is the same.
    pub(crate) fn snapshot(&self) -> String {
        let queries: &[&str] = match self.kind {
            Kind::Postgres => &[
                "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '') \
                 FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT LIKE 'waymark_history%' ORDER BY 1",
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'waymark_history%' ORDER BY 1",
                "SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1",
                "SELECT tgname || ' ON ' || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
                "SELECT table_name || ': ' || view_definition FROM information_schema.views WHERE table_schema = 'public' ORDER BY 1",
                "SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = 'public' AND sequence_name NOT LIKE 'waymark_history%' ORDER BY 1",
            ],
            Kind::Mysql => &[
                "SELECT CONCAT(table_name, '.', column_name, ' ', column_type, ' ', is_nullable, ' ', COALESCE(column_default, '')) \
                 FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name NOT LIKE 'waymark_history%' ORDER BY 1",
                "SELECT CONCAT(table_name, '.', index_name, '.', column_name) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name NOT LIKE 'waymark_history%' ORDER BY 1",
                "SELECT CONCAT(routine_type, ' ', routine_name) FROM information_schema.routines WHERE routine_schema = DATABASE() ORDER BY 1",
                "SELECT CONCAT(trigger_name, ' ON ', event_object_table) FROM information_schema.triggers WHERE trigger_schema = DATABASE() ORDER BY 1",
            ],
            Kind::Sqlite => &[
                "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'waymark_history%' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
            ],
        };
        let mut out = String::new();
        for q in queries {
            for row in self.rows(q) {
                out.push_str(
                    &row.into_iter()
                        .map(Option::unwrap_or_default)
                        .collect::<Vec<_>>()
                        .join(" | "),
                );
                out.push('\n');
            }
            out.push_str("--\n");
        }
        out
    }

    /// `(version, state)` of each history row, in version order as text.
    pub(crate) fn history(&self) -> Vec<(String, String)> {
        let exists = match self.kind {
            Kind::Sqlite => !self.rows("SELECT name FROM sqlite_master WHERE name = 'waymark_history'").is_empty(),
            Kind::Postgres => !self.rows("SELECT table_name::text FROM information_schema.tables WHERE table_name = 'waymark_history'").is_empty(),
            Kind::Mysql => !self
                .rows("SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'waymark_history'")
                .is_empty(),
        };
        if !exists {
            return Vec::new();
        }
        let mut rows: Vec<(String, String)> = self
            .rows("SELECT version, state FROM waymark_history")
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        rows.sort_by_key(|(v, _)| (v.len(), v.clone()));
        rows
    }
}

fn text_of_mysql(r: &sqlx::mysql::MySqlRow, i: usize) -> Option<String> {
    r.try_get::<Option<String>, _>(i)
        .or_else(|_| {
            r.try_get::<Option<Vec<u8>>, _>(i)
                .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
        })
        .or_else(|_| r.try_get::<Option<i64>, _>(i).map(|v| v.map(|v| v.to_string())))
        .unwrap()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (kind, admin, name) = (self.kind, self.admin_url.clone(), self.name.clone());
        // Dropping must not panic inside a panicking test; report and go on.
        let result = std::panic::catch_unwind(|| {
            block_on(async {
                match kind {
                    Kind::Postgres => {
                        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&pool)
                            .await
                            .unwrap();
                        pool.close().await;
                    }
                    Kind::Mysql => {
                        let pool = sqlx::MySqlPool::connect(&admin).await.unwrap();
                        sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                            .execute(&pool)
                            .await
                            .unwrap();
                        pool.close().await;
                    }
                    Kind::Sqlite => {}
                }
            })
        });
        if result.is_err() {
            eprintln!("could not drop test database {name}");
        }
    }
}

/// A folder of migrations and a working directory for the binary.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("migrations")).unwrap();
        Project { dir }
    }

    pub(crate) fn migrations(&self) -> PathBuf {
        self.dir.path().join("migrations")
    }

    /// Writes `<stem>/up.sql` and, if given, `<stem>/down.sql`.
    pub(crate) fn migration(&self, stem: &str, up: &str, down: Option<&str>) -> &Self {
        let folder = self.migrations().join(stem);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("up.sql"), up).unwrap();
        if let Some(down) = down {
            std::fs::write(folder.join("down.sql"), down).unwrap();
        }
        self
    }

    pub(crate) fn file(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub(crate) fn command(&self, db: &TestDb, args: &[&str]) -> Command {
        self.command_at(&db.url, args)
    }

    /// The binary run in the project against any `url`, one that no
    /// [`TestDb`] made (a server that does not answer, a wrong password).
    pub(crate) fn command_at(&self, url: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("WAYMARK_CONNECT_TIMEOUT")
            .env("WAYMARK_CACHE_DIR", cache_dir())
            .env("NO_COLOR", "1")
            .arg("--database-url")
            .arg(url)
            .args(args);
        cmd
    }

    pub(crate) fn run(&self, db: &TestDb, args: &[&str]) -> Run {
        Run::from(self.command(db, args).output().unwrap())
    }

    /// [`Project::run`] against any `url`, as [`Project::command_at`].
    pub(crate) fn run_at(&self, url: &str, args: &[&str]) -> Run {
        Run::from(self.command_at(url, args).output().unwrap())
    }

    /// `waymark ARGS` in the project on a pseudo-terminal (`script` gives
    /// the command one and copies what it drew), against `url` or, with
    /// none, the URLs its files give; fails the test unless it succeeds,
    /// and returns what it drew.
    #[track_caller]
    pub(crate) fn drawn_on_a_terminal(&self, url: Option<&str>, args: &str) -> String {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
            .current_dir(self.dir.path())
            .env("WAYMARK_CACHE_DIR", cache_dir());
        match url {
            Some(url) => cmd.env("DATABASE_URL", url),
            None => cmd.env_remove("DATABASE_URL"),
        };
        let out = cmd.output().unwrap();
        let drawn = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{drawn}");
        drawn
    }
}

/// The names in a folder, sorted.
pub(crate) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One compiled-artifact cache for the whole test run, as a user would have.
pub(crate) fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("waymark-cache")
}

#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Defines one test per dialect from a function taking a [`Kind`].
macro_rules! each_dialect {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() { super::$name(crate::common::Kind::Sqlite) }
                #[test]
                fn postgres() { super::$name(crate::common::Kind::Postgres) }
                #[test]
                fn mysql() { super::$name(crate::common::Kind::Mysql) }
            }
        )*
    };
}
pub(crate) use each_dialect;

/// A backup set's `manifest.json`, as JSON.
pub(crate) fn read_manifest(set: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(set.join("manifest.json")).unwrap()).unwrap()
}

/// Writes `manifest` as a backup set's manifest, signed with its own
/// SHA-256 as waymark signs it: an edit the set's checks do not catch.
pub(crate) fn rewrite_manifest(set: &std::path::Path, manifest: &serde_json::Value) {
    let body = serde_json::to_string_pretty(manifest).unwrap();
    let body = body.strip_suffix("\n}").unwrap();
    let digest = hex(&Sha256::digest(body.as_bytes()));
    std::fs::write(
        set.join("manifest.json"),
        format!("{body},\n  \"manifest_sha256\": \"{digest}\"\n}}\n"),
    )
    .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
