//! Injected time: verification never reads a clock, callers pass [`UnixTime`].

use std::fmt;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// A point in time as milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UnixTime(u64);

impl UnixTime {
    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        UnixTime(secs.saturating_mul(1000))
    }

    /// From milliseconds since the epoch (the unit of Nitro `timestamp`).
    pub const fn from_millis(ms: u64) -> Self {
        UnixTime(ms)
    }

    /// Converts a `SystemTime` read by the caller (times before 1970 clamp to 0).
    pub fn from_system(t: std::time::SystemTime) -> Self {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        UnixTime(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        UnixTime(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// `self - d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Self {
        UnixTime(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Parses RFC 3339 (`2024-02-26T07:02:01Z`, optional fraction, `Z` or `±HH:MM`);
    /// sub-millisecond digits are dropped, times before 1970 are refused.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
        let ms = t.unix_timestamp_nanos().checked_div(1_000_000)?;
        u64::try_from(ms).ok().map(UnixTime)
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339 in UTC, with milliseconds only when non-zero. Times past year 9999 (only
    /// hostile documents claim them) print as milliseconds since the epoch instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1_000_000;
        let format = if self.0.is_multiple_of(1000) {
            SECONDS
        } else {
            MILLIS
        };
        match OffsetDateTime::from_unix_timestamp_nanos(nanos).map(|t| t.format(format)) {
            Ok(Ok(text)) => f.write_str(&text),
            _ => write!(f, "{} ms after 1970-01-01T00:00:00Z", self.0),
        }
    }
}

/// `2024-02-26T07:02:01Z`.
const SECONDS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
/// `2024-02-26T07:02:01.123Z`.
const MILLIS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = UnixTime::parse_rfc3339("2022-11-09T22:52:00.696Z");
        assert_eq!(t, Some(UnixTime::from_millis(1_668_034_320_696)));
        assert_eq!(
            t.map(|t| t.to_string()).as_deref(),
            Some("2022-11-09T22:52:00.696Z")
        );
        assert_eq!(
            UnixTime::parse_rfc3339("2024-02-26T12:32:01+05:30"),
            UnixTime::parse_rfc3339("2024-02-26T07:02:01Z")
        );
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2024-02-26 07:02:01",
            "2024-02-26T07:02:01Zx",
            "x024-02-26T07:02:01Z",
        ] {
            assert_eq!(UnixTime::parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(UnixTime::parse_rfc3339("1969-12-31T23:59:59Z"), None);
        // Hostile documents carry any u64: printing them must not fail.
        assert_eq!(
            UnixTime::from_millis(u64::MAX).to_string(),
            format!("{} ms after 1970-01-01T00:00:00Z", u64::MAX)
        );
        assert_eq!(UnixTime::from_secs(0).to_string(), "1970-01-01T00:00:00Z");
    }
}
