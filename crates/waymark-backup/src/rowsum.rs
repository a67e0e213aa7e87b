//! A table's rows as one order-independent digest: the sum, modulo 2^128,
//! of the XXH3-128 of each row in canonical form.
//!
//! The chunks' SHA-256 digests need the rows back in key order, and so an
//! index, before a restored table can be checked. This sum does not: the
//! restore reads each table back in whatever order its pages lie, on any
//! number of connections, while its indexes are still being built, and
//! adds the parts. A sum finds any row changed, lost or added, and a row
//! doubled in place of another, with the odds of a 128-bit hash; it is
//! not meant to stand against a forger (the files' SHA-256 digests are),
//! only to prove that the rows that came back are the rows that went in.
//! Where it differs, the keyed check by chunk names the range.

use waymark_db::{Dialect, records};
use xxhash_rust::xxh3::xxh3_128;

/// The rows of a piece as `Conn::stream_rows` hands it over: lines of
/// `COPY` text on PostgreSQL; elsewhere one length-prefixed record per
/// piece, whatever bytes it holds.
pub(crate) fn rows_of(dialect: Dialect, piece: &[u8]) -> impl Iterator<Item = &[u8]> {
    let lines = (dialect == Dialect::Postgres).then(|| lines(piece));
    let whole = (dialect != Dialect::Postgres).then_some(piece);
    lines.into_iter().flatten().chain(whole)
}

/// The lines of `COPY` text, each with its line end, and a last one
/// without, as it is. Found with `memchr`: a backup's rows pass through
/// here several hundred megabytes at a time, and a byte-by-byte split
/// cost a tenth of the create's CPU.
pub(crate) fn lines(piece: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', piece);
    std::iter::from_fn(move || {
        let end = match ends.next() {
            Some(end) => end + 1,
            None if start < piece.len() => piece.len(),
            None => return None,
        };
        let line = &piece[start..end];
        start = end;
        Some(line)
    })
}

/// The running sum of a table's rows, or of a part of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RowSum {
    sum: u128,
    rows: u64,
}

impl RowSum {
    /// Adds whole rows as `Conn::stream_rows` hands them over: lines of
    /// `COPY` text on PostgreSQL, one length-prefixed record per piece
    /// elsewhere.
    pub(crate) fn add(&mut self, dialect: Dialect, piece: &[u8]) {
        rows_of(dialect, piece).for_each(|row| self.add_row(row));
    }

    /// Adds the rows of a whole decoded chunk: lines of `COPY` text on
    /// PostgreSQL, length-prefixed records elsewhere (a record cut short
    /// counts as one, so that it shows as a difference).
    pub(crate) fn add_chunk(&mut self, dialect: Dialect, raw: &[u8]) {
        match dialect {
            Dialect::Postgres => self.add(dialect, raw),
            _ => records(raw).for_each(|row| self.add_row(row.unwrap_or_else(|cut| cut))),
        }
    }

    fn add_row(&mut self, row: &[u8]) {
        self.sum = self.sum.wrapping_add(xxh3_128(row));
        self.rows += 1;
    }

    /// The sum of two parts of one table.
    pub(crate) fn merge(self, other: RowSum) -> RowSum {
        RowSum {
            sum: self.sum.wrapping_add(other.sum),
            rows: self.rows + other.rows,
        }
    }

    /// The rows added.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// As the manifest records it: 32 hex digits.
    pub(crate) fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(dialect: Dialect, pieces: &[&[u8]]) -> RowSum {
        let mut sum = RowSum::default();
        pieces.iter().for_each(|p| sum.add(dialect, p));
        sum
    }

    #[test]
    fn lines_are_cut_as_split_inclusive_cuts_them() {
        for text in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"a\n\nb\n", b"1\tx\n2\ty\n3"] {
            let ours: Vec<&[u8]> = lines(text).collect();
            let std: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
            assert_eq!(ours, std, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn the_order_and_the_cut_do_not_matter_and_any_change_does() {
        let pg = Dialect::Postgres;
        let whole = sum(pg, &[b"1\ta\n2\tb\n3\tc\n"]);
        assert_eq!(whole.rows(), 3);
        assert_eq!(whole, sum(pg, &[b"3\tc\n", b"1\ta\n2\tb\n"]));
        let parts = sum(pg, &[b"2\tb\n"]).merge(sum(pg, &[b"3\tc\n1\ta\n"]));
        assert_eq!(whole, parts);
        assert_eq!(whole.hex().len(), 32);
        // A changed row, a lost row, and a row doubled in place of another.
        assert_ne!(whole.hex(), sum(pg, &[b"1\ta\n2\tB\n3\tc\n"]).hex());
        assert_ne!(whole, sum(pg, &[b"1\ta\n2\tb\n"]));
        assert_ne!(whole.hex(), sum(pg, &[b"1\ta\n1\ta\n3\tc\n"]).hex());
        // Elsewhere a piece is one record, whatever bytes it holds.
        let lite = sum(Dialect::Sqlite, &[b"\x03\x00\x00\x001\n2", b"\x01\x00\x00\x003"]);
        assert_eq!(lite.rows(), 2);
        // A whole chunk sums as its records did one by one.
        let mut chunk = RowSum::default();
        chunk.add_chunk(Dialect::Sqlite, b"\x01\x00\x00\x003\x03\x00\x00\x001\n2");
        assert_eq!(chunk, lite);
        let mut short = RowSum::default();
        short.add_chunk(Dialect::Mysql, b"\x01\x00\x00\x003\x09\x00");
        assert_eq!(short.rows(), 2);
        let mut lines = RowSum::default();
        lines.add_chunk(Dialect::Postgres, b"1\ta\n2\tb\n3\tc\n");
        assert_eq!(lines, whole);
    }
}
