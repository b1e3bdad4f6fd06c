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

/// The limits this target offers (what it is willing to accept at most).
#[derive(Debug, Clone, Copy)]
pub struct TargetLimits {
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub max_outstanding_r2t: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
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
        }
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
            let pick = value.split(',').find(|c| *c == "None" || *c == "CRC32C");
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

    proptest::proptest! {
        #[test]
        fn parse_text_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_text(&b);
        }
    }
}
