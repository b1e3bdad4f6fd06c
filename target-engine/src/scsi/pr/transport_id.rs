//! Initiator ports and their iSCSI TransportIDs (SPC-4 §7.6.4.6), as
//! PERSISTENT RESERVE OUT names them (SPEC_I_PT, REGISTER AND MOVE) and
//! READ FULL STATUS reports them.

use std::sync::Arc;

use super::bad_param;
use crate::scsi::{NexusId, SenseReason};

/// The PROTOCOL IDENTIFIER of iSCSI TransportIDs (SPC-4 §7.6.4.6).
const PROTOCOL_ISCSI: u8 = 0x05;

/// An initiator port: iSCSI name and ISID (SAM-5 §4.6). Without an ISID it
/// stands for every initiator port of that name (TransportID format 00b).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::scsi) struct InitiatorPort {
    pub name: Arc<str>,
    pub isid: Option<[u8; 6]>,
}

impl InitiatorPort {
    /// The initiator port of `id`.
    pub(super) fn of(id: &NexusId) -> InitiatorPort {
        InitiatorPort { name: Arc::clone(&id.initiator_name), isid: Some(id.isid) }
    }

    pub(super) fn same_name(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Whether the initiator port of `id` is this one (or one of these).
    pub(super) fn takes_in(&self, id: &NexusId) -> bool {
        self.same_name(&id.initiator_name) && self.isid.is_none_or(|i| i == id.isid)
    }

    /// Whether every port `other` stands for is one this stands for.
    pub(super) fn covers(&self, other: &InitiatorPort) -> bool {
        self.same_name(&other.name) && (self.isid.is_none() || self.isid == other.isid)
    }

    /// Whether some port is both one of these and one of `other`'s.
    pub(super) fn overlaps(&self, other: &InitiatorPort) -> bool {
        self.same_name(&other.name) && (self.isid.is_none() || other.isid.is_none() || self.isid == other.isid)
    }

    /// Its iSCSI TransportID (SPC-4 §7.6.4.6): format 01b (name + ",i,0x" +
    /// ISID) with an ISID, 00b (name only) without.
    pub(in crate::scsi) fn transport_id(&self) -> Vec<u8> {
        let (format, mut text) = match &self.isid {
            Some(isid) => (0x40, format!("{},i,0x{}", self.name, isid_hex(isid)).into_bytes()),
            None => (0x00, self.name.as_bytes().to_vec()),
        };
        // NUL-terminated, padded to a multiple of four and at least 20 bytes.
        text.push(0);
        while text.len() % 4 != 0 || text.len() < 20 {
            text.push(0);
        }
        let mut t = vec![format | PROTOCOL_ISCSI, 0];
        t.extend_from_slice(&(text.len() as u16).to_be_bytes());
        t.extend_from_slice(&text);
        t
    }
}

/// An ISID as 12 lowercase hex digits.
pub(in crate::scsi) fn isid_hex(isid: &[u8; 6]) -> String {
    isid.iter().map(|b| format!("{b:02x}")).collect()
}

/// An ISID from at most 12 hex digits.
pub(in crate::scsi) fn parse_isid(hex: &str) -> Option<[u8; 6]> {
    if hex.is_empty() || hex.len() > 12 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let v = u64::from_str_radix(hex, 16).ok()?.to_be_bytes();
    Some([v[2], v[3], v[4], v[5], v[6], v[7]])
}

/// Reads the iSCSI TransportID (SPC-4 §7.6.4.6) at the start of `b`: the
/// initiator port it names and its length, or the offset of the wrong field
/// (a length that runs past `b` is the ADDITIONAL LENGTH's fault).
pub(super) fn parse_transport_id(b: &[u8]) -> Result<(InitiatorPort, usize), usize> {
    let &[first, _, l0, l1, ..] = b else { return Err(0) };
    let format = first >> 6;
    if first & 0x0f != PROTOCOL_ISCSI || format > 1 {
        return Err(0);
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len == 0 || len % 4 != 0 {
        return Err(2);
    }
    let body = b.get(4..4 + len).ok_or(2usize)?;
    let end = body.iter().position(|&c| c == 0).ok_or(4usize)?;
    let text = std::str::from_utf8(&body[..end]).map_err(|_| 4usize)?;
    let (name, isid) = if format == 0 {
        (text, None)
    } else {
        // ASCII lowercasing keeps byte offsets.
        let at = text.to_ascii_lowercase().find(",i,0x").ok_or(4usize)?;
        (&text[..at], Some(parse_isid(&text[at + 5..]).ok_or(4usize)?))
    };
    // Only a valid iSCSI name, in its normal form, becomes an initiator port.
    let name = crate::iscsi::name::normalize(name).map_err(|_| 4usize)?;
    Ok((InitiatorPort { name: Arc::from(name), isid }, 4 + len))
}

/// The TransportIDs filling `list`, which starts at byte `base` of the
/// parameter list, each with its offset there. More than `max` of them is
/// INSUFFICIENT REGISTRATION RESOURCES, found before the rest is parsed.
pub(super) fn parse_transport_ids(
    list: &[u8],
    base: usize,
    max: usize,
) -> Result<Vec<(InitiatorPort, usize)>, SenseReason> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < list.len() {
        if out.len() == max {
            return Err(SenseReason::InsufficientRegistrationResources);
        }
        let (port, len) = parse_transport_id(&list[at..]).map_err(|off| bad_param(base + at + off))?;
        out.push((port, base + at));
        at += len;
    }
    Ok(out)
}
