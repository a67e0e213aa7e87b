use std::cmp::Ordering;
use std::fmt;

/// A migration's version, ordered as its source tool orders it.
///
/// All-digit versions compare as integers of any length (`9` before `10`,
/// and 20-digit versions work); anything else (diesel's
/// `2019-02-26-002946`) compares as a string. A folder uses one kind or the
/// other, which discovery checks, so the order is total where it matters.
#[derive(Debug, Clone)]
pub struct Version(String);

impl Version {
    /// Parses a version as written in a file name: digits, optionally with
    /// `-` separators, starting with a digit.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("the version is empty".to_owned());
        }
        if !raw.starts_with(|c: char| c.is_ascii_digit()) || !raw.chars().all(|c| c.is_ascii_digit() || c == '-') {
            return Err(format!(
                "version {raw:?} must be digits (optionally separated by -), starting with a digit"
            ));
        }
        if raw.ends_with('-') || raw.contains("--") {
            return Err(format!("version {raw:?} has an empty part between dashes"));
        }
        Ok(Version(raw.to_owned()))
    }

    /// A version read back from the history table. Lenient: another tool
    /// may have written it, and it only needs to compare.
    pub fn from_history(raw: &str) -> Self {
        Version(raw.to_owned())
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an integer version.
    pub fn is_integer(&self) -> bool {
        self.0.bytes().all(|b| b.is_ascii_digit())
    }

    /// Whether this is version zero, which stands for "before every migration".
    pub fn is_zero(&self) -> bool {
        self.is_integer() && self.0.bytes().all(|b| b == b'0')
    }

    fn digits(&self) -> &str {
        let trimmed = self.0.trim_start_matches('0');
        if trimmed.is_empty() { "0" } else { trimmed }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.is_integer() && other.is_integer() {
            let (a, b) = (self.digits(), other.digits());
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        } else {
            self.0.cmp(&other.0)
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
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn integers_order_numerically_at_any_length() {
        let mut versions: Vec<Version> = ["10", "9", "000011", "20240101000000000001", "20240101000000000000", "1"]
            .iter()
            .map(|v| Version::parse(v).unwrap())
            .collect();
        versions.sort();
        let sorted: Vec<&str> = versions.iter().map(Version::as_str).collect();
        assert_eq!(
            sorted,
            ["1", "9", "10", "000011", "20240101000000000000", "20240101000000000001"]
        );
        assert_eq!(Version::parse("007").unwrap(), Version::parse("7").unwrap());
    }

    #[test]
    fn diesel_timestamps_order_as_strings() {
        let a = Version::parse("2019-02-26-002946").unwrap();
        let b = Version::parse("2019-10-01-000000").unwrap();
        assert!(a < b);
    }

    #[test]
    fn rejects_malformed_versions() {
        for bad in ["", "v1", "1a", "-1", "1-", "1--2"] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
    }
}
