//! A table's rows into chunks: each chunk's rows hashed (SHA-256), summed
//! (the order-independent `RowSum`), checked for rising keys where the
//! read needs it, and compressed with zstd, in batches.
//!
//! With two reads (`CreateOptions::reads`), the rows of a big table arrive
//! on two connections at once, both read by one task. Hashing and
//! compressing them is most of the client's work. Where the machine has
//! more than two cores, each read hands its batches to a thread of its
//! own, through a channel that holds a few, so that memory stays bounded
//! whatever the table's size and the client's work is not held to one
//! core. On two cores, the server's backends and the reading task already
//! fill both: a thread per read there measured slower, through switching,
//! than writing on the reading task, and a thread beside one read no
//! faster (design 0009, "Two cores, one thread").

use std::fs::File as FsFile;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};
use waymark_db::Dialect;

use crate::create::{CreateOptions, Hashing};
use crate::error::BackupError;
use crate::manifest::{Chunk, File};
use crate::rowsum::RowSum;
use crate::stored::KeyOrder;

/// Writes one table's rows as chunks.
pub(crate) struct ChunkWriter {
    dir: PathBuf,
    /// Whose rows: PostgreSQL's come many to a piece.
    dialect: Dialect,
    prefix: String,
    limit: u64,
    level: i32,
    open: Option<OpenChunk>,
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) files: Vec<File>,
    /// Every row written, as the restore sums them back.
    pub(crate) sum: RowSum,
    /// For rows read as a heap's pages lie, whether their keys rise: once
    /// one does not, the rest is dropped and the chunks are not used.
    pub(crate) order: Option<KeyOrder>,
}

struct OpenChunk {
    relative: String,
    encoder: zstd::Encoder<'static, Hashing<FsFile>>,
    raw: Sha256,
    raw_bytes: u64,
    rows: u64,
}

impl ChunkWriter {
    pub(crate) fn new(dir: &Path, prefix: String, options: &CreateOptions, dialect: Dialect) -> Self {
        ChunkWriter {
            dir: dir.to_owned(),
            dialect,
            prefix,
            limit: options.chunk_bytes,
            level: options.level,
            open: None,
            chunks: Vec::new(),
            files: Vec::new(),
            sum: RowSum::default(),
            order: None,
        }
    }

    /// Takes whole rows: follows their keys, if it must, sums them and
    /// writes them.
    fn take(&mut self, piece: &[u8], rows: u64) -> std::io::Result<()> {
        if let Some(order) = self.order.as_mut()
            && !order.follow(piece)
        {
            return Ok(());
        }
        // A batch of many rows: records, not one, outside PostgreSQL.
        self.sum.add_chunk(self.dialect, piece);
        self.write(piece, rows)
    }

    /// Takes whole rows; starts a new chunk once the current one is full.
    /// A piece of many rows (`COPY` text, whose rows end at line ends) is
    /// cut after the row that fills the chunk, the rest going to the next.
    fn write(&mut self, mut piece: &[u8], mut rows: u64) -> std::io::Result<()> {
        loop {
            let room = self.limit - self.open.as_ref().map_or(0, |o| o.raw_bytes.min(self.limit));
            let cut = match usize::try_from(room) {
                Ok(room) if rows > 1 && self.dialect == Dialect::Postgres && piece.len() > room => {
                    let from = room.max(1) - 1;
                    memchr::memchr(b'\n', &piece[from..]).map_or(piece.len(), |i| from + i + 1)
                }
                _ => piece.len(),
            };
            let (part, rest) = piece.split_at(cut);
            let part_rows = match rest.is_empty() {
                true => rows,
                false => memchr::memchr_iter(b'\n', part).count() as u64,
            };
            self.write_part(part, part_rows)?;
            if rest.is_empty() {
                return Ok(());
            }
            (piece, rows) = (rest, rows - part_rows);
        }
    }

    fn write_part(&mut self, piece: &[u8], rows: u64) -> std::io::Result<()> {
        if self.open.is_none() {
            let relative = format!("{}-{:05}.zst", self.prefix, self.chunks.len() + 1);
            let file = FsFile::create(self.dir.join(&relative))?;
            let hashing = Hashing {
                inner: file,
                hash: Sha256::new(),
                bytes: 0,
            };
            self.open = Some(OpenChunk {
                relative,
                encoder: zstd::Encoder::new(hashing, self.level)?,
                raw: Sha256::new(),
                raw_bytes: 0,
                rows: 0,
            });
        }
        let open = self.open.as_mut().expect("opened above");
        open.encoder.write_all(piece)?;
        open.raw.update(piece);
        open.raw_bytes += piece.len() as u64;
        open.rows += rows;
        if open.raw_bytes >= self.limit {
            self.close()?;
        }
        Ok(())
    }

    /// The chunk being written (or about to be), for messages.
    fn current(&self) -> PathBuf {
        match &self.open {
            Some(open) => self.dir.join(&open.relative),
            None => self
                .dir
                .join(format!("{}-{:05}.zst", self.prefix, self.chunks.len() + 1)),
        }
    }

    pub(crate) fn close(&mut self) -> std::io::Result<()> {
        let Some(open) = self.open.take() else { return Ok(()) };
        let hashing = open.encoder.finish()?;
        hashing.inner.sync_all()?;
        waymark_db::crash_point("backup-chunk-written");
        self.files.push(File {
            path: open.relative.clone(),
            size: hashing.bytes,
            sha256: hex::encode(hashing.hash.finalize()),
        });
        self.chunks.push(Chunk {
            file: open.relative,
            rows: open.rows,
            raw_bytes: open.raw_bytes,
            raw_sha256: hex::encode(open.raw.finalize()),
        });
        Ok(())
    }
}

/// Bytes of whole rows hashed and compressed at a time (at most a quarter
/// of a chunk, so chunks keep their size).
const BATCH: usize = 256 * 1024;

/// Batches a channel holds before the reading side waits: enough to keep
/// the writer busy, few enough that memory does not grow with the table.
const QUEUED: usize = 4;

/// Whether this machine has more than two cores: more than one server
/// backend and the reading task fill. Both the number of reads and where
/// their rows are written follow it.
pub(crate) fn cores_to_spare() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) > 2
}

/// What a writer ends with: the writer, or the chunk it could not write
/// and why.
type Written = Result<ChunkWriter, (PathBuf, std::io::Error)>;

/// A [`ChunkWriter`] fed whole rows, in batches: on a thread of its own
/// where the machine has cores to spare, on the reading task otherwise.
pub(crate) struct Chunks {
    to: Writing,
    batch: Vec<u8>,
    batch_rows: u64,
    limit: usize,
}

/// Where a [`Chunks`]' batches are written.
enum Writing {
    /// By the task that reads the rows, between reads: where there are
    /// no cores to spare, a thread only adds switching. `None` once
    /// finished; boxed, as a writer is large beside a thread's handles.
    Here(Box<Option<Written>>),
    /// On a thread of its own, behind a channel.
    Thread {
        tx: Option<SyncSender<(Vec<u8>, u64)>>,
        worker: Option<JoinHandle<Written>>,
    },
}

impl Chunks {
    /// Starts `writer`: on a thread of its own if the machine has more
    /// than two cores.
    pub(crate) fn start(writer: ChunkWriter) -> Chunks {
        Chunks::start_on(writer, cores_to_spare())
    }

    fn start_on(mut writer: ChunkWriter, thread: bool) -> Chunks {
        // Rows arrive a run at a time; they are hashed and compressed in
        // batches, which costs far less per byte.
        let limit = BATCH.min(usize::try_from(writer.limit / 4).unwrap_or(BATCH)).max(1);
        let to = match thread {
            false => Writing::Here(Box::new(Some(Ok(writer)))),
            true => {
                let (tx, rx) = sync_channel::<(Vec<u8>, u64)>(QUEUED);
                let worker = std::thread::spawn(move || {
                    for (batch, rows) in rx {
                        writer.take(&batch, rows).map_err(|e| (writer.current(), e))?;
                    }
                    writer.close().map_err(|e| (writer.current(), e))?;
                    Ok(writer)
                });
                Writing::Thread {
                    tx: Some(tx),
                    worker: Some(worker),
                }
            }
        };
        Chunks {
            to,
            batch: Vec::with_capacity(limit),
            batch_rows: 0,
            limit,
        }
    }

    /// Takes whole rows. An error means the writer stopped, and
    /// [`Chunks::finish`] says why.
    pub(crate) fn push(&mut self, piece: &[u8], rows: u64) -> std::io::Result<()> {
        self.batch.extend_from_slice(piece);
        self.batch_rows += rows;
        if self.batch.len() < self.limit {
            return Ok(());
        }
        self.send()
    }

    fn send(&mut self) -> std::io::Result<()> {
        let rows = std::mem::take(&mut self.batch_rows);
        let stopped = || std::io::Error::other("the chunk writer stopped");
        match &mut self.to {
            Writing::Here(written) => {
                let Some(Ok(writer)) = &mut **written else {
                    return Err(stopped());
                };
                if let Err(e) = writer.take(&self.batch, rows) {
                    let failed = (writer.current(), e);
                    **written = Some(Err(failed));
                    return Err(stopped());
                }
                self.batch.clear();
                Ok(())
            }
            Writing::Thread { tx, .. } => {
                let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.limit));
                let tx = tx.as_ref().expect("sending until finished");
                tx.send((batch, rows)).map_err(|_| stopped())
            }
        }
    }

    /// Writes what is left, closes the last chunk and gives the writer
    /// back; or the first error it met, naming the chunk.
    pub(crate) fn finish(mut self) -> Result<ChunkWriter, BackupError> {
        let sent = match self.batch.is_empty() {
            true => Ok(()),
            false => self.send(),
        };
        let written = match &mut self.to {
            Writing::Here(written) => written.take().expect("finished once").and_then(|mut writer| {
                writer.close().map_err(|e| (writer.current(), e))?;
                Ok(writer)
            }),
            Writing::Thread { .. } => match self.stop() {
                Ok(written) => written,
                Err(panic) => std::panic::resume_unwind(panic),
            },
        };
        let writer = written.map_err(|(path, e)| BackupError::io(&path, e))?;
        sent.map_err(|e| BackupError::io(&writer.current(), e))?;
        Ok(writer)
    }

    /// Ends the channel and waits for the writer's thread.
    fn stop(&mut self) -> std::thread::Result<Written> {
        let Writing::Thread { tx, worker } = &mut self.to else {
            unreachable!("only a thread is stopped")
        };
        *tx = None;
        worker.take().expect("stopped once").join()
    }
}

impl Drop for Chunks {
    /// A read that failed leaves no thread behind.
    fn drop(&mut self) {
        if let Writing::Thread { worker: Some(_), .. } = &self.to {
            drop(self.stop());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(chunk_bytes: u64) -> CreateOptions {
        CreateOptions {
            out: PathBuf::new(),
            tables: None,
            url: String::new(),
            chunk_bytes,
            level: 3,
            snapshot: None,
            pages: false,
            jobs: None,
        }
    }

    /// Rows of `COPY` text, pushed in pieces of uneven size, as runs of
    /// the server's messages arrive.
    fn write_rows(dir: &Path, thread: bool) -> ChunkWriter {
        let writer = ChunkWriter::new(dir, "t".into(), &options(64 * 1024), Dialect::Postgres);
        let mut chunks = Chunks::start_on(writer, thread);
        let mut piece = Vec::new();
        let mut rows = 0;
        for i in 0..20_000u32 {
            piece.extend_from_slice(format!("{i}\trow {i} of the table\n").as_bytes());
            rows += 1;
            if i % 97 == 0 {
                chunks.push(&piece, rows).unwrap();
                (piece, rows) = (Vec::new(), 0);
            }
        }
        chunks.push(&piece, rows).unwrap();
        chunks.finish().unwrap()
    }

    #[test]
    fn chunks_written_here_and_on_a_thread_are_the_same() {
        let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (write_rows(here.path(), false), write_rows(there.path(), true));
        let shape = |w: &ChunkWriter| -> Vec<(String, u64, u64, String)> {
            w.chunks
                .iter()
                .map(|c| (c.file.clone(), c.rows, c.raw_bytes, c.raw_sha256.clone()))
                .collect()
        };
        assert!(a.chunks.len() > 3, "several chunks: {:?}", shape(&a));
        assert_eq!(shape(&a), shape(&b));
        assert_eq!(a.chunks.iter().map(|c| c.rows).sum::<u64>(), 20_000);
        // Every chunk but the last is cut after the row that fills it.
        assert!(a.chunks[..a.chunks.len() - 1].iter().all(|c| c.raw_bytes >= 64 * 1024));
        let files = |w: &ChunkWriter| {
            w.files
                .iter()
                .map(|f| (f.path.clone(), f.sha256.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(files(&a), files(&b));
        assert_eq!(a.sum.hex(), b.sum.hex());
    }

    /// A chunk that cannot be written stops the rows, here as on a
    /// thread, and the error names the chunk's file.
    #[test]
    fn a_chunk_that_cannot_be_written_is_named() {
        for thread in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let gone = dir.path().join("gone");
            let writer = ChunkWriter::new(&gone, "t".into(), &options(1024), Dialect::Postgres);
            let mut chunks = Chunks::start_on(writer, thread);
            let row = b"1\tx\n".repeat(100);
            // The channel's batches may be taken before the thread fails.
            let stopped = (0..100).any(|_| chunks.push(&row, 100).is_err());
            assert!(stopped || thread, "written here, the first batch fails");
            let err = chunks.finish().err().expect("the folder does not exist").to_string();
            assert!(err.contains(&gone.join("t-00001.zst").display().to_string()), "{err}");
        }
    }
}
