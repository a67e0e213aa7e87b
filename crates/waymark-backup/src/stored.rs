//! Reading a PostgreSQL table in the order its pages hold it, when that is
//! its key's order.
//!
//! A set's chunks are runs of the primary key, so that a restore that
//! finds a table's rows wrong can name the range. Asking the server for
//! them `ORDER BY` the key costs it a walk of the key's index beside the
//! heap: a quarter more than a plain scan of the same rows, measured on
//! pgbench's accounts (design 0009). Most tables are filled in key order,
//! their key a sequence, and a plain scan already gives their rows in it.
//! So the create reads the heap as it lies and checks each key against the
//! one before; only a table where one does not rise is read again by key.
//! The chunks are then byte for byte what the ordered read gives.
//!
//! The client compares keys as the server orders them only for integers,
//! so only a key of integer columns is checked; any other is read by key.

use waymark_db::TableInfo;

/// The rising keys of rows read so far, for a key of integer columns.
#[derive(Debug, Clone)]
pub(crate) struct KeyOrder {
    /// Where the key's columns are in each row, in the key's order.
    positions: Vec<usize>,
    first: Vec<i64>,
    last: Vec<i64>,
    /// The row being read's key, kept to save an allocation per row.
    scratch: Vec<i64>,
    /// A key that did not rise, or did not read as an integer.
    broken: bool,
}

/// The integer types, as `format_type` names them.
const INTEGERS: [&str; 3] = ["smallint", "integer", "bigint"];

impl KeyOrder {
    /// The check for `table`'s rows, or `None` when its key is missing or
    /// has a column the client cannot order as the server does.
    pub(crate) fn of(table: &TableInfo) -> Option<KeyOrder> {
        let positions: Vec<usize> = table
            .primary_key
            .iter()
            .map(|k| {
                let i = table.columns.iter().position(|c| c == k)?;
                INTEGERS.contains(&table.types.get(i)?.as_str()).then_some(i)
            })
            .collect::<Option<_>>()?;
        (!positions.is_empty()).then(|| KeyOrder {
            positions,
            first: Vec::new(),
            last: Vec::new(),
            scratch: Vec::new(),
            broken: false,
        })
    }

    /// Follows the whole rows of a piece of `COPY` text. False once a key
    /// has not been greater than the one before it, and from then on.
    pub(crate) fn follow(&mut self, piece: &[u8]) -> bool {
        for line in crate::rowsum::lines(piece) {
            if self.broken {
                break;
            }
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            self.scratch.clear();
            for &p in &self.positions {
                match field(line, p).and_then(integer) {
                    Some(value) => self.scratch.push(value),
                    None => self.broken = true,
                }
            }
            if self.broken {
                break;
            }
            if self.first.is_empty() {
                self.first.clone_from(&self.scratch);
            } else if self.scratch <= self.last {
                self.broken = true;
                break;
            }
            std::mem::swap(&mut self.last, &mut self.scratch);
        }
        !self.broken
    }

    /// Whether every key followed rose.
    pub(crate) fn rising(&self) -> bool {
        !self.broken
    }

    /// Whether every key followed rose, and all of them are below every
    /// key `next` followed: two runs of pages that, one after the other,
    /// are in key order.
    pub(crate) fn precedes(&self, next: &KeyOrder) -> bool {
        !self.broken && !next.broken && (self.last.is_empty() || next.first.is_empty() || self.last < next.first)
    }
}

/// Field `n` (from 0) of a line of `COPY` text. A tab in a value is
/// written `\\t`, so every tab byte ends a field.
fn field(line: &[u8], n: usize) -> Option<&[u8]> {
    let mut start = 0;
    let mut tabs = memchr::memchr_iter(b'\t', line);
    for _ in 0..n {
        start = tabs.next()? + 1;
    }
    let end = tabs.next().unwrap_or(line.len());
    Some(&line[start..end])
}

/// An integer as `COPY` writes one: an optional `-` and decimal digits.
fn integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    // Summed below zero, where i64 reaches one further (`i64::MIN`).
    let mut below = 0i64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        below = below.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative { Some(below) } else { below.checked_neg() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[(&str, &str)], key: &[&str]) -> TableInfo {
        TableInfo {
            name: "public.t".into(),
            columns: columns.iter().map(|(c, _)| (*c).to_owned()).collect(),
            types: columns.iter().map(|(_, t)| (*t).to_owned()).collect(),
            primary_key: key.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    #[test]
    fn only_a_key_of_integers_is_checked() {
        let ints = table(&[("note", "text"), ("a", "bigint"), ("b", "smallint")], &["a", "b"]);
        assert_eq!(KeyOrder::of(&ints).unwrap().positions, vec![1, 2]);
        assert!(KeyOrder::of(&table(&[("id", "uuid")], &["id"])).is_none());
        assert!(KeyOrder::of(&table(&[("id", "integer"), ("t", "text")], &["id", "t"])).is_none());
        assert!(KeyOrder::of(&table(&[("id", "integer")], &[])).is_none(), "no key");
        assert!(KeyOrder::of(&table(&[("id", "numeric")], &["id"])).is_none());
    }

    #[test]
    fn keys_that_rise_across_pieces_pass_and_one_that_does_not_breaks_for_good() {
        let t = table(&[("note", "text"), ("id", "integer")], &["id"]);
        let mut order = KeyOrder::of(&t).unwrap();
        assert!(order.follow(b"a\\tb\t-3\nx\t2\n"));
        assert!(order.follow(b"y\t10\n"));
        assert!(!order.follow(b"z\t10\n"), "an equal key does not rise");
        assert!(!order.follow(b"z\t11\n"), "broken stays broken");
        assert!(order.broken);
    }

    #[test]
    fn keys_compare_as_numbers_and_by_their_columns_in_the_key_s_order() {
        let t = table(&[("b", "integer"), ("a", "integer")], &["a", "b"]);
        let mut order = KeyOrder::of(&t).unwrap();
        // (a, b) = (9, 5), (10, 1), (10, 2): rising as numbers, not as text.
        assert!(order.follow(b"5\t9\n1\t10\n2\t10\n"));
        assert!(!order.follow(b"1\t10\n"));
    }

    #[test]
    fn integers_read_as_copy_writes_them_to_both_ends_of_i64() {
        assert_eq!(integer(b"0"), Some(0));
        assert_eq!(integer(b"-17"), Some(-17));
        assert_eq!(integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(integer(b"-9223372036854775808"), Some(i64::MIN));
        for not in [&b""[..], b"-", b"9223372036854775808", b"1.5", b"\\N", b" 1"] {
            assert_eq!(integer(not), None, "{:?}", String::from_utf8_lossy(not));
        }
        assert_eq!(field(b"a\tb\tc", 0), Some(&b"a"[..]));
        assert_eq!(field(b"a\tb\tc", 2), Some(&b"c"[..]));
        assert_eq!(field(b"a\tb\tc", 3), None);
    }

    #[test]
    fn a_key_that_does_not_read_as_an_integer_breaks_the_order() {
        let t = table(&[("id", "bigint")], &["id"]);
        let mut order = KeyOrder::of(&t).unwrap();
        assert!(!order.follow(b"\\N\n"));
    }

    #[test]
    fn two_runs_precede_each_other_only_when_the_first_ends_below_the_second() {
        let t = table(&[("id", "integer")], &["id"]);
        let run = |rows: &[u8]| {
            let mut order = KeyOrder::of(&t).unwrap();
            order.follow(rows);
            order
        };
        assert!(run(b"1\n2\n").precedes(&run(b"3\n4\n")));
        assert!(!run(b"1\n5\n").precedes(&run(b"3\n4\n")));
        assert!(run(b"").precedes(&run(b"3\n")), "an empty run");
        assert!(run(b"3\n").precedes(&run(b"")));
        assert!(!run(b"2\n1\n").precedes(&run(b"3\n")), "a run that did not rise");
    }
}
