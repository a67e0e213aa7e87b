//! How big a backup will be and how long it will take, before it starts:
//! the catalog's sizes of the tables, at the pace earlier sets in the same
//! folder were taken on this machine. A backup that takes a day longer
//! than planned pushes an upgrade back a day; this says so beforehand.
//!
//! The record is the sets' own manifests ([`Timing`]): it goes where the
//! sets go, and needs no file of its own.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use waymark_db::{Database, Dialect, Footprint, TableInfo};

use crate::create::{CreateOptions, select_tables};
use crate::error::BackupError;
use crate::list::folders;
use crate::manifest::{Manifest, Timing};

/// What a backup is expected to take.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// Each table to back up, with what the catalog says of it.
    pub tables: Vec<(String, Footprint)>,
    /// Bytes of rows before compression.
    pub raw_bytes: u64,
    /// Bytes of the set on disk.
    pub set_bytes: u64,
    /// How long `create` takes, its check of the written set included.
    pub duration: Duration,
    /// What the paces stand on.
    pub basis: Basis,
    /// The paces used.
    pub rates: Rates,
}

impl Estimate {
    /// Rows, bytes of rows and bytes of indexes over every table.
    pub fn totals(&self) -> Footprint {
        self.tables.iter().fold(Footprint::default(), |sum, (_, f)| Footprint {
            rows: sum.rows + f.rows,
            data_bytes: sum.data_bytes + f.data_bytes,
            index_bytes: sum.index_bytes + f.index_bytes,
        })
    }
}

/// Where an estimate's paces come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// Earlier sets of the same kind of database in the same folder.
    Earlier {
        /// How many.
        sets: usize,
        /// The newest one's id.
        newest: String,
    },
    /// No earlier set big enough to time (at least [`TIMED_MIN_BYTES`] of
    /// rows): the paces are the documented defaults.
    Assumed,
}

/// A set smaller than this says more about connecting and starting
/// `pg_dump` than about reading rows, so its pace is not learned from.
pub const TIMED_MIN_BYTES: u64 = 4 << 20;

/// How many of the newest sets the paces are learned from.
const LEARN_FROM: usize = 5;

/// The paces of a backup on this machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Bytes of rows on disk read per second.
    pub data_per_sec: f64,
    /// Bytes of rows before compression per byte on disk (text is denser
    /// or looser than the server's pages).
    pub raw_per_data: f64,
    /// Bytes of the set per byte of rows before compression.
    pub set_per_raw: f64,
    /// Time that does not grow with the rows: connecting, the snapshot,
    /// reading the schema (`pg_dump` twice on PostgreSQL).
    pub fixed: Duration,
}

impl Rates {
    /// The paces assumed when no earlier set says otherwise, measured with
    /// `cargo xtask bench-backup`'s data on a 2-core machine shared with
    /// the server, rounded down, and documented in docs/guide/backups.md.
    /// The compressed size assumes ordinary text; pgbench's blank filler
    /// compresses a hundredfold, so there the size errs large.
    pub fn assumed(dialect: Dialect) -> Rates {
        match dialect {
            Dialect::Postgres => Rates {
                data_per_sec: 350e6,
                raw_per_data: 0.8,
                set_per_raw: 0.3,
                fixed: Duration::from_millis(250),
            },
            Dialect::Mysql => Rates {
                data_per_sec: 200e6,
                raw_per_data: 0.8,
                set_per_raw: 0.3,
                fixed: Duration::from_millis(50),
            },
            Dialect::Sqlite => Rates {
                data_per_sec: 45e6,
                raw_per_data: 1.0,
                set_per_raw: 0.3,
                fixed: Duration::from_millis(20),
            },
        }
    }

    /// The paces of the newest sets of a `dialect` database in `out` that
    /// were timed and big enough to learn from, or the assumed ones.
    pub fn learned(out: &Path, dialect: Dialect) -> Result<(Rates, Basis), BackupError> {
        let assumed = Rates::assumed(dialect);
        // Newest first, reading manifests only until enough are found: a
        // backup starts by this, and a folder may hold years of sets.
        let timed: Vec<(String, Timing, u64, u64)> = folders(out)?
            .into_iter()
            .rev()
            .filter_map(|(_, dir)| {
                let m = Manifest::read(&dir).ok()?;
                let timing = m.timing?;
                // A copy of pages goes at a pace of its own, which says
                // nothing of a backup of rows.
                (m.database.server.dialect == dialect.name()
                    && m.pages.is_none()
                    && timing.data_bytes >= TIMED_MIN_BYTES)
                    .then(|| (m.id.clone(), timing, m.raw_bytes(), m.size()))
            })
            .take(LEARN_FROM)
            .collect();
        let Some((newest, ..)) = timed.first() else {
            return Ok((assumed, Basis::Assumed));
        };
        let sum = |f: fn(&(String, Timing, u64, u64)) -> u64| timed.iter().map(f).sum::<u64>() as f64;
        let data = sum(|t| t.1.data_bytes);
        let raw = sum(|t| t.2);
        let set = sum(|t| t.3);
        // Time past the fixed part, never less than a millisecond a set.
        let fixed = assumed.fixed.as_millis() as u64;
        let reading_ms = timed
            .iter()
            .map(|t| t.1.took_ms.saturating_sub(fixed).max(1))
            .sum::<u64>() as f64;
        let rates = Rates {
            data_per_sec: data / (reading_ms / 1000.0),
            raw_per_data: raw / data,
            set_per_raw: if raw > 0.0 { set / raw } else { assumed.set_per_raw },
            fixed: assumed.fixed,
        };
        Ok((
            rates,
            Basis::Earlier {
                sets: timed.len(),
                newest: newest.clone(),
            },
        ))
    }

    /// How long reading `data_bytes` takes, the fixed part included.
    pub fn duration(&self, data_bytes: u64) -> Duration {
        self.fixed + Duration::from_secs_f64(data_bytes as f64 / self.data_per_sec)
    }

    /// The bytes of rows before compression expected from `data_bytes`.
    pub fn raw(&self, data_bytes: u64) -> u64 {
        (data_bytes as f64 * self.raw_per_data) as u64
    }
}

/// What a backup of `db` with `options` will take, from the catalog and
/// the sets already in `options.out`. Reads no rows and writes nothing.
pub async fn estimate(db: &Database, options: &CreateOptions) -> Result<Estimate, BackupError> {
    let mut conn = db.connection().await?;
    let tables = select_tables(conn.tables().await?, options.tables.as_deref())?;
    let footprints = conn.footprints(&tables).await?;
    drop(conn);
    let (rates, basis) = Rates::learned(&options.out, db.dialect())?;
    Ok(of(tables, footprints, rates, basis))
}

/// The estimate for `tables` of these sizes at these paces.
pub(crate) fn of(tables: Vec<TableInfo>, footprints: Vec<Footprint>, rates: Rates, basis: Basis) -> Estimate {
    let tables: Vec<(String, Footprint)> = tables.into_iter().map(|t| t.name).zip(footprints).collect();
    let data: u64 = tables.iter().map(|(_, f)| f.data_bytes).sum();
    let raw = rates.raw(data);
    Estimate {
        raw_bytes: raw,
        set_bytes: (raw as f64 * rates.set_per_raw) as u64,
        duration: rates.duration(data),
        tables,
        basis,
        rates,
    }
}

/// A running backup's expected bytes of rows, from the catalog at first,
/// then from what the finished tables turned out to hold.
pub(crate) struct Total {
    /// How long the whole was expected to take when it started.
    pub(crate) expected: Duration,
    state: Mutex<Seen>,
}

struct Seen {
    /// Bytes on disk of the tables not finished yet.
    left_data: u64,
    /// Bytes on disk, and bytes of rows read, of the finished tables.
    done_data: u64,
    done_raw: u64,
    prior: f64,
}

/// How many bytes on disk the prior ratio counts as: a few small tables,
/// mostly page headers and free space, do not overturn it.
const PRIOR_WEIGHT: f64 = 8e6;

impl Total {
    pub(crate) fn new(footprints: &[Footprint], rates: Rates) -> Total {
        let data = footprints.iter().map(|f| f.data_bytes).sum();
        Total {
            expected: rates.duration(data),
            state: Mutex::new(Seen {
                left_data: data,
                done_data: 0,
                done_raw: 0,
                prior: rates.raw_per_data,
            }),
        }
    }

    /// The bytes of rows now expected in all, `so_far` having been read:
    /// never less than that.
    pub(crate) fn bytes(&self, so_far: u64) -> u64 {
        let seen = self.state.lock().expect("no panics while held");
        let ratio = (seen.done_raw as f64 + seen.prior * PRIOR_WEIGHT) / (seen.done_data as f64 + PRIOR_WEIGHT);
        let expected = seen.done_raw + (seen.left_data as f64 * ratio) as u64;
        expected.max(so_far)
    }

    /// A table of this footprint is done, and `so_far` bytes of rows have
    /// been read over every table.
    pub(crate) fn finished(&self, footprint: &Footprint, so_far: u64) {
        let mut seen = self.state.lock().expect("no panics while held");
        seen.left_data = seen.left_data.saturating_sub(footprint.data_bytes);
        seen.done_data += footprint.data_bytes;
        seen.done_raw = so_far;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_part_and_the_pace_add_up() {
        let rates = Rates {
            data_per_sec: 100e6,
            raw_per_data: 0.5,
            set_per_raw: 0.25,
            fixed: Duration::from_millis(200),
        };
        let table = |name: &str| TableInfo {
            name: name.to_owned(),
            columns: Vec::new(),
            types: Vec::new(),
            primary_key: Vec::new(),
        };
        let sizes = |data_bytes| Footprint {
            rows: 10,
            data_bytes,
            index_bytes: 7,
        };
        let e = of(
            vec![table("a"), table("b")],
            vec![sizes(300_000_000), sizes(100_000_000)],
            rates,
            Basis::Assumed,
        );
        assert_eq!(e.duration, Duration::from_millis(4200));
        assert_eq!(e.raw_bytes, 200_000_000);
        assert_eq!(e.set_bytes, 50_000_000);
        assert_eq!(
            e.totals(),
            Footprint {
                rows: 20,
                data_bytes: 400_000_000,
                index_bytes: 14,
            }
        );
    }

    #[test]
    fn the_total_follows_what_finished_tables_held() {
        let rates = Rates {
            raw_per_data: 0.5,
            ..Rates::assumed(Dialect::Postgres)
        };
        let big = Footprint {
            rows: 1,
            data_bytes: 100_000_000,
            index_bytes: 0,
        };
        let total = Total::new(&[big, big], rates);
        assert_eq!(total.bytes(0), 100_000_000, "the catalog at the prior ratio");
        assert_eq!(total.bytes(150_000_000), 150_000_000, "never less than read so far");
        // The first table held 1.0 byte of rows per byte on disk: the
        // second is now expected near that, the prior weighing little.
        total.finished(&big, 100_000_000);
        let now = total.bytes(100_000_000);
        assert!((196_000_000..200_000_000).contains(&now), "{now}");
    }

    #[test]
    fn no_folder_means_the_assumed_paces() {
        let missing = std::env::temp_dir().join(format!("waymark-estimate-none-{}", std::process::id()));
        let (rates, basis) = Rates::learned(&missing, Dialect::Postgres).unwrap();
        assert_eq!(basis, Basis::Assumed);
        assert_eq!(rates, Rates::assumed(Dialect::Postgres));
        assert!(!missing.exists(), "looking made no folder");
    }
}
