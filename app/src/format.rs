//! Formatting shared by the pages.

/// "3 d 4 h", "5 h 12 min", "42 s".
pub fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// An RFC 3339 UTC timestamp as "2026-11-24 09:57:56 UTC".
pub fn timestamp(rfc3339: &str) -> String {
    let t = rfc3339.trim_end_matches('Z').replacen('T', " ", 1);
    let t = t.split('.').next().unwrap_or(&t).to_string();
    format!("{t} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(125), "2 min 5 s");
        assert_eq!(duration(3 * 3600 + 60), "3 h 1 min");
        assert_eq!(duration(2 * 86_400 + 3600), "2 d 1 h");
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("2026-11-24T09:57:56Z"), "2026-11-24 09:57:56 UTC");
        assert_eq!(timestamp("2026-11-24T09:57:56.123Z"), "2026-11-24 09:57:56 UTC");
    }
}
