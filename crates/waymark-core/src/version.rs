use std::cmp::Ordering;
use std::fmt;

/// A migration's version, ordered as its source tool orders it.
///
/// A version is one or more numeric parts. Dashes join digits into one
/// part (diesel's `2019-02-26-002946` is `20190226002946`, as diesel reads
/// it), dots and underscores separate parts (Flyway's `1.2.10`, written
/// `V1_2_10__` in a file name), a missing part counting as zero (Flyway's
/// `1` and `1.0` are one version).
///
/// Two parts compare as integers (`9` before `10`) unless both have eight
/// significant digits or more: those are timestamps, and compare as text,
/// as diesel and dbmate compare them. A timestamp with more precision is
/// not a larger number: crates.io's `2025-11-19-091444-0000` comes before
/// its `2026-01-20-162913`. Every short part comes before every long one,
/// so the order is total however a folder mixes them.
#[derive(Debug, Clone)]
pub struct Version {
    raw: String,
    key: Key,
}

#[derive(Debug, Clone)]
enum Key {
    /// Each part's digits without leading zeros.
    Parts(Vec<String>),
    /// A version another tool wrote that is not numeric; compares as text.
    Text,
}

impl Version {
    /// Parses a version as written in a file name: digits, optionally with
    /// `-` inside a part and `.` between parts, starting with a digit.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("the version is empty".to_owned());
        }
        if !raw.starts_with(|c: char| c.is_ascii_digit())
            || !raw.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(format!(
                "version {raw:?} must be digits (optionally separated by - or .), starting with a digit"
            ));
        }
        if raw.ends_with(['-', '.'])
            || raw.contains("--")
            || raw.contains("..")
            || raw.contains("-.")
            || raw.contains(".-")
        {
            return Err(format!("version {raw:?} has an empty part between separators"));
        }
        Ok(Version {
            raw: raw.to_owned(),
            key: parts(raw).expect("checked above"),
        })
    }

    /// A version read back from a history table. Lenient: another tool
    /// may have written it, and it only needs to compare.
    pub fn from_history(raw: &str) -> Self {
        let numeric = raw.starts_with(|c: char| c.is_ascii_digit())
            && raw.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
        let key = if numeric { parts(raw) } else { None };
        Version {
            raw: raw.to_owned(),
            key: key.unwrap_or(Key::Text),
        }
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether this is an integer version (one part, no dashes).
    pub fn is_integer(&self) -> bool {
        self.raw.bytes().all(|b| b.is_ascii_digit())
    }

    /// Whether this is version zero. `down --to 0` reverts everything
    /// after it: everything, unless a migration has version zero (diesel's
    /// `00000000000000_diesel_initial_setup`), which `down --all` reverts.
    pub fn is_zero(&self) -> bool {
        matches!(&self.key, Key::Parts(p) if p.iter().all(|d| d == "0"))
    }

    /// The digits of a single-part version, dashes removed and leading
    /// zeros kept: how diesel and golang-migrate write it in their tables.
    pub fn digits(&self) -> String {
        self.raw.chars().filter(char::is_ascii_digit).collect()
    }
}

/// Splits `raw` into numeric parts; `None` when a part is empty.
fn parts(raw: &str) -> Option<Key> {
    raw.split(['.', '_'])
        .map(|part| {
            let digits: String = part.chars().filter(|c| *c != '-').collect();
            if digits.is_empty() {
                return None;
            }
            let trimmed = digits.trim_start_matches('0');
            Some(if trimmed.is_empty() { "0" } else { trimmed }.to_owned())
        })
        .collect::<Option<Vec<_>>>()
        .map(Key::Parts)
}

/// Significant digits from which a part is a timestamp (`YYYYMMDD` and
/// more).
const TIMESTAMP: usize = 8;

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.key, &other.key) {
            (Key::Parts(a), Key::Parts(b)) => {
                for i in 0..a.len().max(b.len()) {
                    let x = a.get(i).map_or("0", String::as_str);
                    let y = b.get(i).map_or("0", String::as_str);
                    let order = if x.len() >= TIMESTAMP && y.len() >= TIMESTAMP {
                        x.cmp(y)
                    } else {
                        x.len().cmp(&y.len()).then_with(|| x.cmp(y))
                    };
                    if order != Ordering::Equal {
                        return order;
                    }
                }
                Ordering::Equal
            }
            _ => self.raw.cmp(&other.raw),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    fn sorted(raw: &[&str]) -> Vec<String> {
        let mut versions: Vec<Version> = raw.iter().map(|v| Version::parse(v).unwrap()).collect();
        versions.sort();
        versions.iter().map(|v| v.as_str().to_owned()).collect()
    }

    #[test]
    fn integers_order_numerically_at_any_length() {
        assert_eq!(
            sorted(&["10", "9", "000011", "20240101000000000001", "20240101000000000000", "1"]),
            ["1", "9", "10", "000011", "20240101000000000000", "20240101000000000001"]
        );
        assert_eq!(Version::parse("007").unwrap(), Version::parse("7").unwrap());
    }

    #[test]
    fn diesel_versions_mix_digits_and_dashes_by_their_digits() {
        assert_eq!(
            sorted(&[
                "2017-08-31-230457",
                "20140924113530",
                "00000000000000",
                "2019-02-26-002946"
            ]),
            [
                "00000000000000",
                "20140924113530",
                "2017-08-31-230457",
                "2019-02-26-002946"
            ]
        );
        // One version written two ways is one version: a real duplicate.
        assert_eq!(
            Version::parse("2017-08-31-230457").unwrap(),
            Version::parse("20170831230457").unwrap()
        );
        assert!(Version::parse("00000000000000").unwrap().is_zero());
        assert_eq!(Version::parse("2017-08-31-230457").unwrap().digits(), "20170831230457");
    }

    #[test]
    fn timestamps_of_different_precision_compare_as_text() {
        // crates.io's history: a seconds timestamp with `-0000` appended.
        assert_eq!(
            sorted(&[
                "2026-01-20-162913",
                "2025-11-19-091444-0000",
                "2026-05-27-120000",
                "2026-05-26-120000-0000"
            ]),
            [
                "2025-11-19-091444-0000",
                "2026-01-20-162913",
                "2026-05-26-120000-0000",
                "2026-05-27-120000"
            ]
        );
        // Short integers still come first, in numeric order.
        assert_eq!(sorted(&["20240101", "10", "9"]), ["9", "10", "20240101"]);
    }

    #[test]
    fn flyway_versions_order_part_by_part() {
        assert_eq!(
            sorted(&["1.10", "1.2", "2", "1", "1.2.1"]),
            ["1", "1.2", "1.2.1", "1.10", "2"]
        );
        assert_eq!(Version::parse("1").unwrap(), Version::parse("1.0").unwrap());
        assert_eq!(Version::from_history("1_1"), Version::parse("1.1").unwrap());
    }

    #[test]
    fn history_versions_that_are_not_numeric_compare_as_text() {
        assert!(Version::from_history("abc") > Version::from_history("abb"));
        assert!(!Version::from_history("abc").is_zero());
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in ["", "v1", "1a", "-1", "1-", "1--2", "1.", "1..2", "1-.2"] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
    }
}
