//! Parsing of human-friendly sizes (`512MiB`, `2G`) and durations (`30s`, `250ms`).

use std::time::Duration;

/// Parses a byte size: a plain number of bytes or a number with a suffix
/// K/M/G/T (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid size {text:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} overflows"))
}

/// Parses a duration: a number with suffix `ms`, `s`, `m` or `h` (bare numbers are seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        other => Err(format!("unknown duration unit {other:?} in {text:?}")),
    }
}

/// A size setting: the flag's value, else the config file's, parsed; `what` names it in errors.
pub fn size_setting(
    flag: Option<&String>,
    file: Option<&String>,
    what: &str,
) -> anyhow::Result<Option<u64>> {
    flag.or(file)
        .map(|s| parse_size(s).map_err(|e| anyhow::anyhow!("{what}: {e}")))
        .transpose()
}

/// A duration setting: the flag's value, else the config file's, parsed; `what` names it in errors.
pub fn duration_setting(
    flag: Option<&String>,
    file: Option<&String>,
    what: &str,
) -> anyhow::Result<Option<Duration>> {
    flag.or(file)
        .map(|s| parse_duration(s).map_err(|e| anyhow::anyhow!("{what}: {e}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("3k"), Ok(3000));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1d").is_err());
    }
}
