//! iSCSI names (RFC 7143 §4.2.7; the grammar of RFC 3720 §3.2.6.3) and
//! their one normalisation: the one rule the engine (logins, ACLs,
//! TransportIDs), the REST API and the dashboard's forms all use.
//!
//! * `iqn.yyyy-mm.reversed.domain[:anything]`: a year and a month (01–12),
//!   then a naming authority whose labels are not empty;
//! * `eui.` followed by 16 hexadecimal digits;
//! * `naa.` followed by 16 or 32 hexadecimal digits.
//!
//! At most 223 bytes. Names are compared after the stringprep profile of
//! RFC 3722, which folds case: [`normalize`] lowers ASCII letters. Only
//! ASCII is accepted: letters, digits, `.`, `-`, `:` (RFC 3720's set) and
//! `_`, which RFC 3720 leaves out but which host names put into real
//! initiator names; it has no meaning in TransportIDs or logs. Everything
//! else — spaces, control characters, `,` (the TransportID separator),
//! `=` and NUL (the text-key separators) — is refused, so a name that passed
//! is safe to log and to put into a TransportID.
//!
//! This module needs nothing but `std`, so the dashboard compiles it to
//! WebAssembly (the crate's `engine` feature off).

/// The longest iSCSI name, in bytes (RFC 7143 §4.2.7.1).
pub const MAX_LEN: usize = 223;

/// Why a string is not an iSCSI name; the text says how to write one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("Enter an iSCSI name.")]
    Empty,
    #[error("An iSCSI name has at most 223 bytes.")]
    TooLong,
    #[error("An IQN starts with iqn.yyyy-mm. (the year and month the naming authority owned its domain).")]
    IqnDate,
    #[error("Write iqn.yyyy-mm.reversed.domain, e.g. iqn.2026-11.com.example:storage.")]
    IqnShape,
    #[error("The naming authority (reversed domain) is missing or has an empty label.")]
    IqnAuthority,
    #[error("Use only letters, digits, '.', '-', ':' and '_'.")]
    Characters,
    #[error("An EUI name is eui. followed by 16 hexadecimal digits.")]
    Eui,
    #[error("An NAA name is naa. followed by 16 or 32 hexadecimal digits.")]
    Naa,
    #[error("An iSCSI name starts with iqn., eui. or naa.")]
    Format,
}

fn allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '_')
}

/// Checks `name` and returns its normal form (ASCII letters lowered), the
/// form to store, compare and log.
pub fn normalize(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_LEN {
        return Err(NameError::TooLong);
    }
    let lower = name.to_ascii_lowercase();
    if !lower.chars().all(allowed) {
        return Err(NameError::Characters);
    }
    if let Some(rest) = lower.strip_prefix("iqn.") {
        let b = rest.as_bytes();
        let date_ok = b.len() >= 7
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && (1..=12).contains(&((b[5] - b'0') * 10 + (b[6] - b'0')));
        if !date_ok {
            return Err(NameError::IqnDate);
        }
        let authority = rest[7..].strip_prefix('.').ok_or(NameError::IqnShape)?;
        let (domain, _) = authority.split_once(':').unwrap_or((authority, ""));
        if domain.is_empty() || domain.split('.').any(str::is_empty) {
            return Err(NameError::IqnAuthority);
        }
        return Ok(lower);
    }
    let hex = |h: &str, lens: &[usize]| lens.contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(h) = lower.strip_prefix("eui.") {
        return if hex(h, &[16]) { Ok(lower) } else { Err(NameError::Eui) };
    }
    if let Some(h) = lower.strip_prefix("naa.") {
        return if hex(h, &[16, 32]) { Ok(lower) } else { Err(NameError::Naa) };
    }
    Err(NameError::Format)
}

/// Whether `name` is an iSCSI name (in any case).
pub fn is_valid(name: &str) -> bool {
    normalize(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_formats_and_folds_case() {
        assert_eq!(normalize("iqn.2026-11.local.portico:demo").as_deref(), Ok("iqn.2026-11.local.portico:demo"));
        assert_eq!(normalize("IQN.1991-05.com.Microsoft:Host-1").as_deref(), Ok("iqn.1991-05.com.microsoft:host-1"));
        assert!(is_valid("iqn.1994-05.com.redhat:abc123"));
        assert!(is_valid("iqn.1998-01.com.vmware:esx_01-4f2b"));
        assert!(is_valid("iqn.2026-11.com.example"));
        assert_eq!(normalize("eui.0123456789ABCDEF").as_deref(), Ok("eui.0123456789abcdef"));
        assert!(is_valid("naa.60014050123456789abcdef012345678"));
        assert!(is_valid("naa.6001405012345678"));
    }

    #[test]
    fn refuses_what_the_grammar_does_not_allow() {
        assert_eq!(normalize(""), Err(NameError::Empty));
        assert_eq!(normalize("iqn.2026-13.com.x"), Err(NameError::IqnDate));
        assert_eq!(normalize("iqn.26-11.com.x"), Err(NameError::IqnDate));
        assert_eq!(normalize("iqn.2026-11"), Err(NameError::IqnShape));
        assert_eq!(normalize("iqn.2026-11x.com"), Err(NameError::IqnShape));
        assert_eq!(normalize("iqn.2026-11.com..x"), Err(NameError::IqnAuthority));
        assert_eq!(normalize("iqn.2026-11.:x"), Err(NameError::IqnAuthority));
        assert_eq!(normalize("target1"), Err(NameError::Format));
        assert_eq!(normalize("eui.0123"), Err(NameError::Eui));
        assert_eq!(normalize("naa.0123456789abcdeg"), Err(NameError::Naa));
        assert_eq!(normalize(&format!("iqn.2026-11.com.x:{}", "a".repeat(220))), Err(NameError::TooLong));
    }

    #[test]
    fn refuses_characters_that_would_reach_logs_or_transport_ids() {
        for bad in [
            "iqn.2026-11.com.x:a b",
            "iqn.2026-11.com.x:a\nINFO forged",
            "iqn.2026-11.com.x:a,i,0x23",
            "iqn.2026-11.com.x:a=b",
            "iqn.2026-11.com.x:a\0b",
            "iqn.2026-11.com.x:caf\u{e9}",
            "iqn.2026-11.com.x:\u{1b}[31m",
        ] {
            assert_eq!(normalize(bad), Err(NameError::Characters), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// A name that passes is normal already, safe to log, and passes again.
        #[test]
        fn a_normal_name_is_a_fixed_point(s in "\\PC{0,240}") {
            if let Ok(n) = normalize(&s) {
                proptest::prop_assert_eq!(normalize(&n), Ok(n.clone()));
                proptest::prop_assert!(n.len() <= MAX_LEN);
                proptest::prop_assert!(n.bytes().all(|b| b.is_ascii_graphic() && b != b',' && b != b'='));
            }
        }
    }
}
