//! One PostgreSQL server, as logical replication sees it: its settings and
//! tables, its publications, subscriptions and slots. Rows are never read
//! here; that is `waymark-db`'s.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::error::CutoverError;

/// A connection to one of the two servers, for replication's catalog.
pub(crate) struct Server {
    pub(crate) url: String,
    conn: PgConnection,
}

/// A table as replication needs it.
#[derive(Debug, Clone)]
pub(crate) struct ReplTable {
    /// `schema.table`, each part quoted where it needs to be.
    pub(crate) quoted: String,
    /// `schema.table`, as text.
    pub(crate) name: String,
    /// Whether updates and deletes can be replicated: a primary key, or a
    /// replica identity of an index or of the full row.
    pub(crate) identified: bool,
    /// Whether it is unlogged (logical replication does not see it).
    pub(crate) unlogged: bool,
}

/// Our own schema on both servers: the state mirror and the marker.
pub const OWN_SCHEMA: &str = "waymark_cutover";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    pub(crate) async fn connect(url: &str) -> Result<Server, CutoverError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| CutoverError::server("reading the URL", url, e))?;
        // Our sessions write (the marker, the state, subscriptions) on a
        // server held read-only by a switch without PgBouncer.
        let options = options.options([("default_transaction_read_only", "off")]);
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
            .map_err(|e| CutoverError::server("connecting", url, e))?;
        Ok(Server {
            url: url.to_owned(),
            conn,
        })
    }

    fn fail(&self, what: &str, e: sqlx::Error) -> CutoverError {
        CutoverError::server(what, &self.url, e)
    }

    /// Runs `sql` by the simple protocol: outside any transaction block,
    /// as `CREATE SUBSCRIPTION` and `DROP SUBSCRIPTION` need.
    pub(crate) async fn exec(&mut self, what: &str, sql: &str) -> Result<(), CutoverError> {
        tracing::debug!(server = %waymark_db::redact(&self.url), "{sql}");
        sqlx::raw_sql(sql)
            .execute(&mut self.conn)
            .await
            .map(drop)
            .map_err(|e| self.fail(what, e))
    }

    pub(crate) async fn int(&mut self, what: &str, sql: &str) -> Result<i64, CutoverError> {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| self.fail(what, e))
    }

    pub(crate) async fn flag(&mut self, what: &str, sql: &str, arg: &str) -> Result<bool, CutoverError> {
        sqlx::query_scalar::<_, bool>(sql)
            .bind(arg)
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| self.fail(what, e))
    }

    pub(crate) async fn rows<T>(&mut self, what: &str, sql: &str, args: &[&str]) -> Result<Vec<T>, CutoverError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    {
        let mut query = sqlx::query_as::<_, T>(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        query.fetch_all(&mut self.conn).await.map_err(|e| self.fail(what, e))
    }

    pub(crate) async fn optional_int(
        &mut self,
        what: &str,
        sql: &str,
        args: &[&str],
    ) -> Result<Option<i64>, CutoverError> {
        let mut query = sqlx::query_scalar::<_, Option<i64>>(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        query
            .fetch_optional(&mut self.conn)
            .await
            .map(Option::flatten)
            .map_err(|e| self.fail(what, e))
    }

    pub(crate) async fn major(&mut self) -> Result<i64, CutoverError> {
        Ok(self
            .int(
                "reading the version",
                "SELECT current_setting('server_version_num')::bigint",
            )
            .await?
            / 10_000)
    }

    pub(crate) async fn setting(&mut self, name: &str) -> Result<String, CutoverError> {
        sqlx::query_scalar::<_, String>("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| self.fail(&format!("reading {name}"), e))
    }

    /// The database's tables, ours left out.
    pub(crate) async fn tables(&mut self) -> Result<Vec<ReplTable>, CutoverError> {
        let rows: Vec<(String, String, bool, bool)> = self
            .rows(
                "listing the tables",
                "SELECT format('%I.%I', n.nspname, c.relname), n.nspname || '.' || c.relname, \
                 c.relreplident = 'f' OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i \
                   WHERE i.indrelid = c.oid AND i.indisreplident)) \
                 OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i \
                   WHERE i.indrelid = c.oid AND i.indisprimary)), \
                 c.relpersistence = 'u' \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't' \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1) \
                 AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 2",
                &[OWN_SCHEMA],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(quoted, name, identified, unlogged)| ReplTable {
                quoted,
                name,
                identified,
                unlogged,
            })
            .collect())
    }

    /// Makes our schema and the marker table, if missing.
    pub(crate) async fn own_objects(&mut self) -> Result<(), CutoverError> {
        self.exec(
            "making the waymark_cutover schema",
            &format!(
                "CREATE SCHEMA IF NOT EXISTS {OWN_SCHEMA}; \
                 CREATE TABLE IF NOT EXISTS {OWN_SCHEMA}.mark (id int PRIMARY KEY, token text NOT NULL); \
                 CREATE TABLE IF NOT EXISTS {OWN_SCHEMA}.state (id text PRIMARY KEY, state jsonb NOT NULL, \
                   updated timestamptz NOT NULL DEFAULT now())"
            ),
        )
        .await
    }

    /// Whether a publication of that name exists.
    pub(crate) async fn has_publication(&mut self, name: &str) -> Result<bool, CutoverError> {
        self.flag(
            "looking for the publication",
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            name,
        )
        .await
    }

    /// Whether a subscription of that name exists in this database.
    pub(crate) async fn has_subscription(&mut self, name: &str) -> Result<bool, CutoverError> {
        self.flag(
            "looking for the subscription",
            "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1 \
             AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            name,
        )
        .await
    }

    /// Whether a replication slot of that name exists.
    pub(crate) async fn has_slot(&mut self, name: &str) -> Result<bool, CutoverError> {
        self.flag(
            "looking for the replication slot",
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            name,
        )
        .await
    }

    /// Moves the slot's start up to `lsn`, unless it is there already:
    /// transactions that committed before it are not sent.
    pub(crate) async fn advance_slot(&mut self, slot: &str, lsn: &str) -> Result<(), CutoverError> {
        sqlx::query(
            "SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots \
             WHERE slot_name = $1 AND confirmed_flush_lsn < $2::pg_lsn",
        )
        .bind(slot)
        .bind(lsn)
        .fetch_all(&mut self.conn)
        .await
        .map(drop)
        .map_err(|e| self.fail("moving the replication slot to the backup's position", e))
    }

    /// The publication's tables.
    pub(crate) async fn published(&mut self, publication: &str) -> Result<Vec<String>, CutoverError> {
        let rows: Vec<(String,)> = self
            .rows(
                "listing the published tables",
                "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1",
                &[publication],
            )
            .await?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    /// The publication's tables' size on disk.
    pub(crate) async fn published_bytes(&mut self, publication: &str) -> Result<i64, CutoverError> {
        Ok(self
            .optional_int(
                "reading table sizes",
                "SELECT sum(pg_table_size(format('%I.%I', schemaname, tablename)))::bigint \
                 FROM pg_publication_tables WHERE pubname = $1",
                &[publication],
            )
            .await?
            .unwrap_or(0))
    }

    /// Bytes of WAL the slot's consumer has yet to confirm.
    pub(crate) async fn slot_lag(&mut self, slot: &str) -> Result<Option<i64>, CutoverError> {
        self.optional_int(
            "reading the replication slot",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[slot],
        )
        .await
    }

    /// Seconds the subscriber lags in applying, as the walsender measures
    /// it (0 when caught up and idle).
    pub(crate) async fn replay_lag(&mut self, subscription: &str) -> Result<Option<f64>, CutoverError> {
        sqlx::query_scalar::<_, Option<f64>>(
            "SELECT extract(epoch FROM coalesce(replay_lag, interval '0'))::float8 \
             FROM pg_stat_replication WHERE application_name = $1",
        )
        .bind(subscription)
        .fetch_optional(&mut self.conn)
        .await
        .map(Option::flatten)
        .map_err(|e| self.fail("reading pg_stat_replication", e))
    }

    /// Each table's synchronization state in the subscription, by name.
    pub(crate) async fn sync_states(&mut self, subscription: &str) -> Result<Vec<(String, String)>, CutoverError> {
        self.rows(
            "reading the subscription's tables",
            "SELECT n.nspname || '.' || c.relname, r.srsubstate::text FROM pg_subscription_rel r \
             JOIN pg_subscription s ON s.oid = r.srsubid JOIN pg_class c ON c.oid = r.srrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE s.subname = $1 ORDER BY 1",
            &[subscription],
        )
        .await
    }

    /// Whether the subscription is enabled and its apply worker runs.
    pub(crate) async fn subscription_running(&mut self, subscription: &str) -> Result<bool, CutoverError> {
        self.flag(
            "reading pg_stat_subscription",
            "SELECT coalesce(bool_and(s.subenabled) AND bool_or(st.pid IS NOT NULL AND st.relid IS NULL), false) \
             FROM pg_subscription s LEFT JOIN pg_stat_subscription st ON st.subid = s.oid WHERE s.subname = $1",
            subscription,
        )
        .await
    }

    /// Errors the subscription's workers have met (PostgreSQL 15 on).
    pub(crate) async fn subscription_errors(&mut self, subscription: &str) -> Result<i64, CutoverError> {
        if self.major().await? < 15 {
            return Ok(0);
        }
        Ok(self
            .optional_int(
                "reading pg_stat_subscription_stats",
                "SELECT (apply_error_count + sync_error_count)::bigint FROM pg_stat_subscription_stats \
                 WHERE subname = $1",
                &[subscription],
            )
            .await?
            .unwrap_or(0))
    }

    /// Transactions that have written and been open longer than `secs`,
    /// other than ours: `pid 123: 42 s, UPDATE ...`.
    pub(crate) async fn long_transactions(&mut self, secs: f64) -> Result<Vec<String>, CutoverError> {
        let rows: Vec<(i32, f64, String)> = sqlx::query_as(
            "SELECT pid, extract(epoch FROM now() - xact_start)::float8, left(query, 80) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL \
             AND backend_type = 'client backend' AND now() - xact_start > make_interval(secs => $1) ORDER BY 2 DESC",
        )
        .bind(secs)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| self.fail("reading pg_stat_activity", e))?;
        Ok(rows
            .into_iter()
            .map(|(pid, age, query)| format!("pid {pid}: open {age:.0} s, last statement: {query}"))
            .collect())
    }

    /// Schema changes under way: exclusive locks on tables, held or
    /// awaited, by others.
    pub(crate) async fn ddl_in_flight(&mut self) -> Result<Vec<String>, CutoverError> {
        let rows: Vec<(i32, String, bool)> = sqlx::query_as(
            "SELECT l.pid, l.relation::regclass::text, l.granted FROM pg_locks l \
             WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid() \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1",
        )
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| self.fail("reading pg_locks", e))?;
        Ok(rows
            .into_iter()
            .map(|(pid, table, granted)| {
                format!(
                    "pid {pid} {} an exclusive lock on {table}",
                    if granted { "holds" } else { "waits for" }
                )
            })
            .collect())
    }

    /// Sets the marker to a new token; returns it.
    pub(crate) async fn set_mark(&mut self) -> Result<String, CutoverError> {
        let token = format!("{:x}", rand_u64());
        sqlx::query(&format!(
            "INSERT INTO {OWN_SCHEMA}.mark (id, token) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET token = excluded.token"
        ))
        .bind(&token)
        .execute(&mut self.conn)
        .await
        .map_err(|e| self.fail("writing the marker", e))?;
        Ok(token)
    }

    /// Whether the marker holds `token`.
    pub(crate) async fn has_mark(&mut self, token: &str) -> Result<bool, CutoverError> {
        self.flag(
            "reading the marker",
            &format!("SELECT EXISTS (SELECT 1 FROM {OWN_SCHEMA}.mark WHERE id = 1 AND token = $1)"),
            token,
        )
        .await
    }

    /// Writes the state mirror.
    pub(crate) async fn mirror(&mut self, id: &str, json: &str) -> Result<(), CutoverError> {
        sqlx::query(&format!(
            "INSERT INTO {OWN_SCHEMA}.state (id, state) VALUES ($1, $2::jsonb) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated = now()"
        ))
        .bind(id)
        .bind(json)
        .execute(&mut self.conn)
        .await
        .map(drop)
        .map_err(|e| self.fail("recording the cutover's state", e))
    }

    /// What stops this user from holding writes here by making the
    /// database read-only: `None` if it may (own the database, and end
    /// other sessions).
    pub(crate) async fn cannot_fence(&mut self) -> Result<Option<String>, CutoverError> {
        if self.major().await? < 14 {
            return Ok(Some(
                "PostgreSQL 14 or later is needed to end sessions and wait until they are gone".into(),
            ));
        }
        let (owner, signal): (bool, bool) = self
            .rows(
                "reading the role",
                "SELECT r.rolsuper OR pg_has_role(current_user, d.datdba, 'USAGE'), \
                 r.rolsuper OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE') \
                 FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = current_database()",
                &[],
            )
            .await?
            .into_iter()
            .next()
            .unwrap_or((false, false));
        Ok(match (owner, signal) {
            (true, true) => None,
            (false, _) => Some("the user must own the database (or be a superuser) to make it read-only".into()),
            (true, false) => Some(
                "the user must be a member of pg_signal_backend (or a superuser) to end the sessions \
                 that could still write"
                    .into(),
            ),
        })
    }

    /// Holds writes by making the database read-only: new sessions start
    /// read-only at once; sessions from before get up to `grace` to finish
    /// their transactions and are then ended, waiting until they are gone
    /// so that no write of theirs can commit after this returns. Returns
    /// how many sessions were ended.
    pub(crate) async fn fence(&mut self, grace: Duration) -> Result<i64, CutoverError> {
        let database = self.database().await?;
        self.exec(
            "making the database read-only",
            &format!("ALTER DATABASE {database} SET default_transaction_read_only = on"),
        )
        .await?;
        let since: String = sqlx::query_scalar("SELECT clock_timestamp()::text")
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| self.fail("reading the clock", e))?;
        let others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
                      AND backend_type = 'client backend' AND backend_start < $1::timestamptz";
        let started = std::time::Instant::now();
        while started.elapsed() < grace {
            let open = self
                .optional_int(
                    "reading pg_stat_activity",
                    &format!("SELECT count(*) {others} AND xact_start IS NOT NULL"),
                    &[&since],
                )
                .await?;
            if open == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (ended, stuck): (i64, i64) = self
            .rows(
                "ending the sessions that could still write",
                &format!(
                    "SELECT count(*), count(*) FILTER (WHERE NOT ended) FROM \
                     (SELECT pg_terminate_backend(pid, 5000) AS ended {others}) t"
                ),
                &[&since],
            )
            .await?
            .into_iter()
            .next()
            .unwrap_or((0, 0));
        if stuck > 0 {
            return Err(CutoverError::Step(format!(
                "{stuck} session(s) of {} did not end within 5 s of being told to",
                waymark_db::redact(&self.url)
            )));
        }
        Ok(ended)
    }

    /// Lets the database take writes again. If it was held read-only, the
    /// sessions opened meanwhile (read-only for good) are ended, so that
    /// clients reconnect to a writable one. Returns whether it was held.
    pub(crate) async fn unfence(&mut self) -> Result<bool, CutoverError> {
        let database = self.database().await?;
        let fenced: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = current_database() AND s.setrole = 0 \
             AND 'default_transaction_read_only=on' = ANY (s.setconfig))",
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(|e| self.fail("reading the database's settings", e))?;
        if !fenced {
            return Ok(false);
        }
        self.exec(
            "letting the database take writes",
            &format!("ALTER DATABASE {database} RESET default_transaction_read_only"),
        )
        .await?;
        self.exec(
            "ending the sessions opened read-only",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .await?;
        Ok(true)
    }

    /// The database's name, quoted for SQL.
    async fn database(&mut self) -> Result<String, CutoverError> {
        sqlx::query_scalar("SELECT quote_ident(current_database())")
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| self.fail("reading the database's name", e))
    }

    pub(crate) async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// `'...'`, for a string in SQL.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A random number, from the standard library's randomly seeded hasher.
pub(crate) fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
