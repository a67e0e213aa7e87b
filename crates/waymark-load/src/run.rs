//! The clients: each on its own connection, drawing a script by weight
//! and running it as one transaction, on a schedule or as fast as it goes;
//! and the reporter, one long reading transaction every so often.
//!
//! With a rate, arrivals are Poisson, as pgbench's `-R`: each client waits
//! an exponentially distributed time of mean `clients / rate` after the
//! previous transaction's scheduled start, and a transaction the client
//! could not start on time (it was still busy with the one before) counts
//! its latency from its scheduled start, not from when the client got to
//! it. A client held up behind a lock then shows the wait in every
//! transaction it owes, instead of quietly sending fewer (coordinated
//! omission). A client that was idle counts from its schedule too, as
//! pgbench does: its own timer (`timer.rs`) wakes it within tens of
//! microseconds of it, where tokio's would be up to a millisecond late.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::conn::{CLIENT_NAME, Conn, Failure, REPORTER_NAME};
use crate::error::LoadError;
use crate::random::Random;
use crate::record::{Recording, Sample};
use crate::sampler::{Sampler, Sessions};
use crate::script::{Script, Sql, Vars};
use crate::timer::Timer;

/// What to run, and how hard.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The database.
    pub url: String,
    /// Connections running the scripts.
    pub clients: u32,
    /// Transactions per second over all clients; `None`: as fast as they go.
    pub rate: Option<f64>,
    /// Drawn by weight for each transaction.
    pub scripts: Vec<Script>,
    /// A long reader run every so often on a connection of its own.
    pub reporter: Option<(Script, Duration)>,
    /// `:scale` in the scripts.
    pub scale: i64,
    /// Seeds every client's draws (`:random_seed`), so that a rehearsal
    /// can be run again with the same keys.
    pub seed: u64,
}

/// The load, running.
#[derive(Debug)]
pub struct Load {
    clock: Arc<Clock>,
    stop: watch::Sender<bool>,
    clients: Vec<JoinHandle<Vec<Sample>>>,
    reporter: Option<JoinHandle<Vec<Sample>>>,
    sampler: Sampler,
}

/// How long clients get, once told to stop, to finish the transaction in
/// hand before it is given up and counted as failed (`unfinished`).
const GRACE: Duration = Duration::from_secs(5);

impl Load {
    /// Connects every client (an unreachable database is found here,
    /// before anything runs), then starts them all on `clock`.
    pub async fn start(options: &LoadOptions, clock: Arc<Clock>) -> Result<Load, LoadError> {
        if options.scripts.is_empty() {
            return Err(LoadError::Usage(
                "a rehearsal needs at least one workload script".to_owned(),
            ));
        }
        if options.clients == 0 {
            return Err(LoadError::Usage("--clients must be at least 1".to_owned()));
        }
        if options.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(LoadError::Usage(
                "--rate must be a positive number of transactions per second".to_owned(),
            ));
        }
        let sessions = Arc::new(Sessions::default());
        let mut conns = Vec::new();
        for _ in 0..options.clients {
            conns.push(open(&options.url, CLIENT_NAME, &sessions).await?);
        }
        let reporter_conn = match &options.reporter {
            Some(_) => Some(open(&options.url, REPORTER_NAME, &sessions).await?),
            None => None,
        };
        let sampler = Sampler::start(&options.url, clock.clone(), sessions.clone()).await?;
        let (stop, stopped) = watch::channel(false);
        // Its thread ends with the last client.
        let timer = Timer::start();
        let scripts: Arc<[Script]> = options.scripts.clone().into();
        // Each client's mean gap between scheduled starts.
        let gap = options.rate.map(|r| f64::from(options.clients) / r);
        let clients = conns
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let client = Client {
                    url: options.url.clone(),
                    name: CLIENT_NAME,
                    sessions: sessions.clone(),
                    clock: clock.clone(),
                    timer: timer.clone(),
                    stopped: stopped.clone(),
                    vars: Vars::new(options.scale, i as i64, options.seed as i64),
                    random: Random::seeded(options.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                };
                tokio::spawn(client.run(conn, scripts.clone(), gap))
            })
            .collect();
        let reporter = match (reporter_conn, &options.reporter) {
            (Some(conn), Some((script, every))) => {
                let client = Client {
                    url: options.url.clone(),
                    name: REPORTER_NAME,
                    sessions: sessions.clone(),
                    clock: clock.clone(),
                    timer: timer.clone(),
                    stopped,
                    vars: Vars::new(options.scale, i64::from(options.clients), options.seed as i64),
                    random: Random::seeded(!options.seed),
                };
                Some(tokio::spawn(client.report(conn, script.clone(), *every)))
            }
            _ => None,
        };
        Ok(Load {
            clock,
            stop,
            clients,
            reporter,
            sampler,
        })
    }

    /// Stops the clients, the reporter and the sampler, and gathers what
    /// they recorded.
    pub async fn stop(self) -> Recording {
        let ended = self.clock.elapsed();
        let _ = self.stop.send(true);
        let mut samples = Vec::new();
        for client in self.clients {
            samples.extend(client.await.unwrap_or_default());
        }
        let reporter = match self.reporter {
            Some(r) => r.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let waits = self.sampler.stop().await;
        Recording::new(self.clock.phases(), ended, samples, reporter, waits)
    }
}

/// How a client's wait for its next scheduled start ended.
enum Wake {
    Stopped,
    /// The schedule had passed before it could wait: the client was busy
    /// (held up behind a lock, say), and the transaction's latency counts
    /// from its schedule, wait included.
    Late,
    /// It slept until the schedule.
    Woken,
}

/// A workload connection, registered with `sessions` on MySQL/MariaDB.
async fn open(url: &str, name: &'static str, sessions: &Sessions) -> Result<Conn, LoadError> {
    let mut conn = Conn::open(url, name).await?;
    match conn.mysql_id().await {
        Ok(Some(id)) => sessions.add(id, name),
        Ok(None) => {}
        Err(failure) => {
            return Err(LoadError::Connect {
                url: crate::conn::redact(url),
                message: failure.message,
            });
        }
    }
    Ok(conn)
}

struct Client {
    url: String,
    name: &'static str,
    sessions: Arc<Sessions>,
    clock: Arc<Clock>,
    timer: Timer,
    stopped: watch::Receiver<bool>,
    vars: Vars,
    random: Random,
}

impl Client {
    async fn run(mut self, conn: Conn, scripts: Arc<[Script]>, gap: Option<f64>) -> Vec<Sample> {
        let total: u64 = scripts.iter().map(|s| u64::from(s.weight)).sum();
        let mut samples = Vec::new();
        let mut conn = Some(conn);
        let mut scheduled = self.clock.elapsed();
        loop {
            let start = match gap {
                Some(gap) => {
                    // Exponential gap: -ln(U) * mean, U in (0, 1].
                    let u = 1.0 - self.random.unit();
                    scheduled += Duration::from_secs_f64(-u.ln() * gap);
                    match self.wait_until(scheduled).await {
                        Wake::Stopped => break,
                        Wake::Late | Wake::Woken => scheduled,
                    }
                }
                None => {
                    if *self.stopped.borrow() {
                        break;
                    }
                    scheduled = self.clock.elapsed();
                    scheduled
                }
            };
            let mut pick = self.random.uniform(0, total as i64 - 1) as u64;
            let index = scripts
                .iter()
                .position(|s| {
                    let hit = pick < u64::from(s.weight);
                    pick = pick.saturating_sub(u64::from(s.weight));
                    hit
                })
                .unwrap_or(0);
            samples.push(self.transaction(&mut conn, &scripts[index], start).await);
        }
        if let Some(conn) = conn {
            conn.close().await;
        }
        samples
    }

    async fn report(mut self, conn: Conn, script: Script, every: Duration) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut conn = Some(conn);
        let mut scheduled = self.clock.elapsed();
        loop {
            scheduled += every;
            let start = match self.wait_until(scheduled).await {
                Wake::Stopped => break,
                Wake::Late | Wake::Woken => scheduled,
            };
            samples.push(self.transaction(&mut conn, &script, start).await);
        }
        if let Some(conn) = conn {
            conn.close().await;
        }
        samples
    }

    /// Sleeps until `offset` on the clock.
    async fn wait_until(&mut self, offset: Duration) -> Wake {
        if *self.stopped.borrow() {
            return Wake::Stopped;
        }
        if self.clock.elapsed() >= offset {
            return Wake::Late;
        }
        tokio::select! {
            () = self.timer.sleep_until(self.clock.at(offset)) => {
                if *self.stopped.borrow() { Wake::Stopped } else { Wake::Woken }
            }
            _ = self.stopped.changed() => Wake::Stopped,
        }
    }

    /// Runs one transaction of `script`, its latency counted from
    /// `start`. One still running when the grace after the stop runs out
    /// is given up and counted as failed, `unfinished`: a transaction stuck
    /// that long is what a rehearsal is for.
    async fn transaction(&mut self, conn: &mut Option<Conn>, script: &Script, start: Duration) -> Sample {
        let mut stopped = self.stopped.clone();
        let grace = async move {
            while !*stopped.borrow() {
                if stopped.changed().await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(GRACE).await;
        };
        let run = async {
            let sql = match script.transaction(&mut self.vars, &mut self.random) {
                Ok(sql) => sql,
                Err(e) => {
                    return Err(Failure {
                        code: "script".to_owned(),
                        message: e.to_string(),
                        lost: false,
                    });
                }
            };
            if conn.is_none() {
                *conn = Some(open(&self.url, self.name, &self.sessions).await.map_err(|e| Failure {
                    code: "connection".to_owned(),
                    message: e.to_string(),
                    lost: true,
                })?);
            }
            let Some(c) = conn.as_mut() else {
                unreachable!("opened above")
            };
            for step in sql {
                match step {
                    Sql::Statement { text, .. } => {
                        if let Err(failure) = c.execute(&text).await {
                            if !failure.lost {
                                // The rest of the transaction is not sent:
                                // roll back what the script began, as an
                                // application's driver would.
                                let _ = c.execute("ROLLBACK").await;
                            }
                            return Err(failure);
                        }
                    }
                    Sql::Sleep(d) => tokio::time::sleep(d).await,
                }
            }
            Ok(())
        };
        let result = tokio::select! {
            r = run => r,
            () = grace => {
                // Its connection is mid-statement: dropped, not reused.
                conn.take();
                Err(Failure {
                    code: "unfinished".to_owned(),
                    message: format!(
                        "still running {} s after the load stopped, and given up",
                        GRACE.as_secs()
                    ),
                    lost: true,
                })
            }
        };
        let end = self.clock.elapsed();
        let error = match result {
            Ok(()) => None,
            Err(failure) => {
                if failure.lost
                    && let Some(c) = conn.take()
                {
                    c.close().await;
                }
                Some(Box::new((failure.code, failure.message)))
            }
        };
        Sample {
            end_us: end.as_micros() as u64,
            latency_us: end.saturating_sub(start).as_micros() as u64,
            error,
        }
    }
}
