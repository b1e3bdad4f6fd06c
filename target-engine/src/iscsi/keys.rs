//! Text keys and operational parameter negotiation (RFC 7143 §6.2, §6.3, §13).
//!
//! Every key has a type that fixes how the answer is computed: list (first
//! value of the offer we support), numerical min/max, boolean AND/OR, or
//! declarative (no answer). Bad values are answered `Reject`, keys we do not
//! know `NotUnderstood`, keys that make no sense in this session `Irrelevant`.

use bytes::{BufMut, Bytes, BytesMut};

/// Why a text segment is not a list of `key=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("text segment is not UTF-8")]
    NotUtf8,
    #[error("text item without '=': {0:?}")]
    NoEquals(String),
    #[error("key too long or empty: {0:?}")]
    BadKey(String),
}

/// Parses `key=value\0key=value\0…` (RFC 7143 §6.1). A trailing segment
/// without NUL is accepted; empty items (padding) are skipped.
pub fn parse_text(data: &[u8]) -> Result<Vec<(String, String)>, TextError> {
    let mut out = Vec::new();
    for item in data.split(|&b| b == 0) {
        if item.is_empty() {
            continue;
        }
        let s = std::str::from_utf8(item).map_err(|_| TextError::NotUtf8)?;
        let (k, v) = s.split_once('=').ok_or_else(|| TextError::NoEquals(s.to_string()))?;
        if k.is_empty() || k.len() > 63 {
            return Err(TextError::BadKey(k.to_string()));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

pub fn encode_text(pairs: &[(String, String)]) -> Bytes {
    let mut b = BytesMut::new();
    for (k, v) in pairs {
        b.put_slice(k.as_bytes());
        b.put_u8(b'=');
        b.put_slice(v.as_bytes());
        b.put_u8(0);
    }
    b.freeze()
}

/// Which digest a target accepts (RFC 7143 §13.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DigestPolicy {
    /// No digest.
    None,
    /// CRC32C required: a login that does not agree to it fails.
    Crc32c,
    /// Whichever the initiator offers first.
    #[default]
    Either,
}

impl DigestPolicy {
    fn allows(self, value: &str) -> bool {
        match self {
            DigestPolicy::None => value == "None",
            DigestPolicy::Crc32c => value == "CRC32C",
            DigestPolicy::Either => value == "None" || value == "CRC32C",
        }
    }
}

/// What a target offers its sessions (what it is willing to accept at
/// most), set per target group; changes apply to new sessions only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetLimits {
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub header_digest: DigestPolicy,
    pub data_digest: DigestPolicy,
    /// Idle seconds after which the target pings with a NOP-In.
    pub nop_in_interval: u32,
    /// Seconds the initiator has to answer a ping before the connection is
    /// considered dead.
    pub nop_in_timeout: u32,
}

impl Default for TargetLimits {
    fn default() -> Self {
        TargetLimits {
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1 << 20,
            first_burst_length: 262_144,
            max_outstanding_r2t: 16,
            initial_r2t: false,
            immediate_data: true,
            header_digest: DigestPolicy::Either,
            data_digest: DigestPolicy::Either,
            nop_in_interval: 5,
            nop_in_timeout: 10,
        }
    }
}

/// The largest MaxRecvDataSegmentLength the engine declares: a PDU's data
/// is read whole, so this bounds every connection's receive buffer.
pub const MAX_RECV_DATA_SEGMENT_LENGTH: u32 = 1 << 20;

impl TargetLimits {
    /// Why these settings cannot be offered (RFC 7143 §13 ranges, and the
    /// engine's own bounds), naming the setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let within = |name: &'static str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err((name, format!("must be between {lo} and {hi}")))
            }
        };
        within("max_recv_data_segment_length", self.max_recv_data_segment_length, 512, MAX_RECV_DATA_SEGMENT_LENGTH)?;
        within("max_burst_length", self.max_burst_length, 512, (1 << 24) - 1)?;
        within("first_burst_length", self.first_burst_length, 512, (1 << 24) - 1)?;
        if self.first_burst_length > self.max_burst_length {
            return Err(("first_burst_length", "must not exceed max_burst_length".into()));
        }
        within("max_outstanding_r2t", self.max_outstanding_r2t, 1, 65_535)?;
        within("nop_in_interval", self.nop_in_interval, 1, 3600)?;
        within("nop_in_timeout", self.nop_in_timeout, 1, 3600)?;
        Ok(())
    }
}

/// Negotiated session and connection parameters, starting at the RFC defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub header_digest: bool,
    pub data_digest: bool,
    /// What the initiator declared: the largest data segment we may send.
    pub initiator_mrdsl: u32,
    /// What we declared: the largest data segment we accept.
    pub target_mrdsl: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            header_digest: false,
            data_digest: false,
            initiator_mrdsl: 8192,
            target_mrdsl: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            max_outstanding_r2t: 1,
            initial_r2t: true,
            immediate_data: true,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

fn num(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

fn boolean(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yn(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_string()
}

/// Result of one offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send `key=value` back.
    Reply(String),
    /// Declarative or handled elsewhere: nothing to send.
    Silent,
}

/// Negotiates one operational key offered by the initiator and updates `p`.
/// Security and identity keys (InitiatorName, AuthMethod, CHAP_*) are handled
/// by the login state machine, not here.
pub fn negotiate(key: &str, value: &str, lim: &TargetLimits, discovery: bool, p: &mut Params) -> Answer {
    let reject = || Answer::Reply("Reject".into());
    let numeric = |lo: u64, hi: u64| num(value).filter(|n| (lo..=hi).contains(n));
    match key {
        "HeaderDigest" | "DataDigest" => {
            let policy = if key == "HeaderDigest" { lim.header_digest } else { lim.data_digest };
            let pick = value.split(',').find(|c| policy.allows(c));
            match pick {
                Some(c) => {
                    let on = c == "CRC32C";
                    if key == "HeaderDigest" {
                        p.header_digest = on
                    } else {
                        p.data_digest = on
                    }
                    Answer::Reply(c.into())
                }
                None => reject(),
            }
        }
        "MaxRecvDataSegmentLength" => match numeric(512, (1 << 24) - 1) {
            Some(n) => {
                p.initiator_mrdsl = n as u32;
                Answer::Silent
            }
            None => reject(),
        },
        "MaxBurstLength" | "FirstBurstLength" if discovery => Answer::Reply("Irrelevant".into()),
        "MaxBurstLength" => match numeric(512, (1 << 24) - 1) {
            Some(n) => {
                p.max_burst_length = (n as u32).min(lim.max_burst_length);
                p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
                Answer::Reply(p.max_burst_length.to_string())
            }
            None => reject(),
        },
        "FirstBurstLength" => match numeric(512, (1 << 24) - 1) {
            Some(n) => {
                p.first_burst_length = (n as u32).min(lim.first_burst_length).min(p.max_burst_length);
                Answer::Reply(p.first_burst_length.to_string())
            }
            None => reject(),
        },
        "MaxOutstandingR2T" => match numeric(1, 65535) {
            Some(n) => {
                p.max_outstanding_r2t = (n as u32).min(lim.max_outstanding_r2t);
                Answer::Reply(p.max_outstanding_r2t.to_string())
            }
            None => reject(),
        },
        "InitialR2T" => match boolean(value) {
            // Result function OR: Yes wins.
            Some(b) => {
                p.initial_r2t = b || lim.initial_r2t;
                Answer::Reply(yn(p.initial_r2t))
            }
            None => reject(),
        },
        "ImmediateData" => match boolean(value) {
            Some(b) => {
                p.immediate_data = b && lim.immediate_data;
                Answer::Reply(yn(p.immediate_data))
            }
            None => reject(),
        },
        // We deliver in order only: OR with our Yes.
        "DataPDUInOrder" | "DataSequenceInOrder" => match boolean(value) {
            Some(_) => Answer::Reply("Yes".into()),
            None => reject(),
        },
        "ErrorRecoveryLevel" => match numeric(0, 2) {
            Some(_) => {
                p.error_recovery_level = 0;
                Answer::Reply("0".into())
            }
            None => reject(),
        },
        "MaxConnections" => match numeric(1, 65535) {
            Some(_) => Answer::Reply("1".into()),
            None => reject(),
        },
        "DefaultTime2Wait" => match numeric(0, 3600) {
            Some(n) => Answer::Reply(n.max(2).to_string()),
            None => reject(),
        },
        "DefaultTime2Retain" => match numeric(0, 3600) {
            // ERL 0 keeps no task state after a connection drops.
            Some(_) => Answer::Reply("0".into()),
            None => reject(),
        },
        // Markers are obsolete (RFC 7143 §13.25); boolean AND with our No.
        "IFMarker" | "OFMarker" => match boolean(value) {
            Some(_) => Answer::Reply("No".into()),
            None => reject(),
        },
        "OFMarkInt" | "IFMarkInt" => Answer::Reply("Irrelevant".into()),
        "iSCSIProtocolLevel" => match numeric(0, 31) {
            Some(n) => Answer::Reply(n.min(1).to_string()),
            None => reject(),
        },
        "TaskReporting" => Answer::Reply("RFC3720".into()),
        "InitiatorAlias" | "InitiatorName" | "SessionType" | "TargetName" => Answer::Silent,
        _ => Answer::Reply("NotUnderstood".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(k: &str, v: &str, p: &mut Params) -> Answer {
        negotiate(k, v, &TargetLimits::default(), false, p)
    }

    #[test]
    fn text_round_trip() {
        let pairs = vec![("A".to_string(), "1".to_string()), ("B".to_string(), "x,y".to_string())];
        assert_eq!(parse_text(&encode_text(&pairs)).unwrap(), pairs);
        assert!(parse_text(b"novalue\0").is_err());
    }

    #[test]
    fn result_functions() {
        let mut p = Params::default();
        assert_eq!(neg("MaxBurstLength", "16776192", &mut p), Answer::Reply("1048576".into()));
        assert_eq!(neg("FirstBurstLength", "4096", &mut p), Answer::Reply("4096".into()));
        assert_eq!(neg("InitialR2T", "No", &mut p), Answer::Reply("No".into()));
        assert_eq!(neg("InitialR2T", "Yes", &mut p), Answer::Reply("Yes".into()));
        assert_eq!(neg("ImmediateData", "Maybe", &mut p), Answer::Reply("Reject".into()));
        assert_eq!(neg("HeaderDigest", "CRC32C,None", &mut p), Answer::Reply("CRC32C".into()));
        assert!(p.header_digest);
        assert_eq!(neg("DataDigest", "MD5", &mut p), Answer::Reply("Reject".into()));
        let only = |h, d| TargetLimits { header_digest: h, data_digest: d, ..TargetLimits::default() };
        let mut q = Params::default();
        let none = only(DigestPolicy::None, DigestPolicy::None);
        assert_eq!(negotiate("HeaderDigest", "CRC32C,None", &none, false, &mut q), Answer::Reply("None".into()));
        assert_eq!(negotiate("DataDigest", "CRC32C", &none, false, &mut q), Answer::Reply("Reject".into()));
        let crc = only(DigestPolicy::Crc32c, DigestPolicy::Crc32c);
        assert_eq!(negotiate("HeaderDigest", "None,CRC32C", &crc, false, &mut q), Answer::Reply("CRC32C".into()));
        assert!(q.header_digest);
        assert_eq!(neg("X-Vendor", "1", &mut p), Answer::Reply("NotUnderstood".into()));
        assert_eq!(neg("MaxRecvDataSegmentLength", "100", &mut p), Answer::Reply("Reject".into()));
        assert_eq!(neg("MaxRecvDataSegmentLength", "65536", &mut p), Answer::Silent);
        assert_eq!(p.initiator_mrdsl, 65536);
        assert_eq!(neg("MaxOutstandingR2T", "64", &mut p), Answer::Reply("16".into()));
        assert_eq!(
            negotiate("MaxBurstLength", "512", &TargetLimits::default(), true, &mut p),
            Answer::Reply("Irrelevant".into())
        );
    }

    #[test]
    fn settings_are_checked_against_the_rfc_ranges() {
        assert!(TargetLimits::default().check().is_ok());
        let bad = |t: TargetLimits| t.check().unwrap_err().0;
        let d = TargetLimits::default();
        assert_eq!(bad(TargetLimits { max_recv_data_segment_length: 100, ..d }), "max_recv_data_segment_length");
        assert_eq!(bad(TargetLimits { max_recv_data_segment_length: 4 << 20, ..d }), "max_recv_data_segment_length");
        assert_eq!(bad(TargetLimits { max_burst_length: 1 << 24, ..d }), "max_burst_length");
        assert_eq!(bad(TargetLimits { first_burst_length: 2 << 20, ..d }), "first_burst_length");
        assert_eq!(bad(TargetLimits { nop_in_interval: 0, ..d }), "nop_in_interval");
    }

    proptest::proptest! {
        #[test]
        fn parse_text_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_text(&b);
        }
    }
}
