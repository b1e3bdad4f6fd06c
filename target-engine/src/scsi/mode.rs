//! Mode parameters: MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 §6.11,
//! §6.13, §6.9, §6.10) over the Caching (SBC-3 §6.4.5), Control
//! (SPC-4 §7.5.8) and Informational Exceptions Control (SPC-4 §7.5.11) pages.
//!
//! Parameters are shared by every I_T nexus and every change is saved with
//! the volume (a restart or a failover must not silently change what an
//! initiator chose): saved values are the current ones, and SP is accepted
//! either way. What can change: D_SENSE (descriptor sense), SWP (software
//! write protect, a [`super::Privileges`] matter) and, under the
//! [`WriteCache::Initiator`] policy only, WCE.
//!
//! WCE is what the volume's write-cache policy says: with WCE zero every
//! write is durable before status (SBC-3 §4.15), so a host that never
//! flushes (VMware ESXi) loses nothing on a power cut.

use super::cdb::PageControl;
use super::sense::{Field, SenseReason};

pub(crate) const PAGE_CACHING: u8 = 0x08;
pub(crate) const PAGE_CONTROL: u8 = 0x0a;
pub(crate) const PAGE_INFO_EXCEPTIONS: u8 = 0x1c;
pub(crate) const PAGE_ALL: u8 = 0x3f;

const PAGES: [u8; 3] = [PAGE_CACHING, PAGE_CONTROL, PAGE_INFO_EXCEPTIONS];

/// Who decides whether a volume caches writes (the Caching page's WCE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteCache {
    /// WCE=0, not changeable: a write is acknowledged once it is on stable
    /// storage (flushes shared by group commit). Nothing acknowledged is
    /// lost when the node loses power.
    #[default]
    WriteThrough,
    /// WCE=1, not changeable: writes are durable on FUA or SYNCHRONIZE
    /// CACHE only; for initiators that flush (Linux, Windows) or hardware
    /// with power protection.
    WriteBack,
    /// WCE starts at 1 and the initiator may change it with MODE SELECT;
    /// its choice is saved with the volume.
    Initiator,
}

impl WriteCache {
    /// WCE under this policy, given the value saved for the volume, if any.
    pub fn wce(self, saved: Option<bool>) -> bool {
        match self {
            WriteCache::WriteThrough => false,
            WriteCache::WriteBack => true,
            WriteCache::Initiator => saved.unwrap_or(true),
        }
    }
}

impl std::fmt::Display for WriteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteCache::WriteThrough => "write-through",
            WriteCache::WriteBack => "write-back",
            WriteCache::Initiator => "initiator",
        })
    }
}

impl std::str::FromStr for WriteCache {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "write-through" => Ok(WriteCache::WriteThrough),
            "write-back" => Ok(WriteCache::WriteBack),
            "initiator" => Ok(WriteCache::Initiator),
            _ => Err(format!("unknown write-cache policy {s:?} (write-through, write-back or initiator)")),
        }
    }
}

/// The changeable mode parameters of one logical unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ModeState {
    pub wce: bool,
    pub d_sense: bool,
    pub swp: bool,
}

impl ModeState {
    /// The values a unit under `policy` starts with (the default values).
    pub fn initial(policy: WriteCache) -> Self {
        ModeState { wce: policy.wce(None), d_sense: false, swp: false }
    }
}

impl Default for ModeState {
    fn default() -> Self {
        ModeState::initial(WriteCache::default())
    }
}

/// What MODE SENSE needs to know about the unit besides its mode state.
pub(crate) struct UnitShape {
    pub blocks: u64,
    pub block_size: u32,
    pub write_protected: bool,
    /// Whether this nexus may change SWP (see [`super::Privileges`]).
    pub swp_changeable: bool,
    /// The volume's write-cache policy (whether WCE is changeable).
    pub write_cache: WriteCache,
}

/// The bytes of one page as `pc` asks for it.
fn page(code: u8, pc: PageControl, st: &ModeState, unit: &UnitShape) -> Vec<u8> {
    let st = match pc {
        PageControl::Default => ModeState::initial(unit.write_cache),
        _ => *st,
    };
    let changeable = pc == PageControl::Changeable;
    match code {
        PAGE_CACHING => {
            let mut p = vec![0u8; 20];
            p[0] = PAGE_CACHING;
            p[1] = 0x12;
            let wce = if changeable { unit.write_cache == WriteCache::Initiator } else { st.wce };
            p[2] = if wce { 0x04 } else { 0 };
            p
        }
        PAGE_CONTROL => {
            let mut p = vec![0u8; 12];
            p[0] = PAGE_CONTROL;
            p[1] = 0x0a;
            if changeable {
                p[2] = 0x04;
                p[4] = if unit.swp_changeable { 0x08 } else { 0 };
            } else {
                // GLTSD: no log parameters are saved.
                p[2] = 0x02 | if st.d_sense { 0x04 } else { 0 };
                // QUEUE ALGORITHM MODIFIER 1: commands may be reordered.
                p[3] = 0x10;
                p[4] = if st.swp { 0x08 } else { 0 };
                p[8..10].copy_from_slice(&0xffffu16.to_be_bytes());
            }
            p
        }
        PAGE_INFO_EXCEPTIONS => {
            let mut p = vec![0u8; 12];
            p[0] = PAGE_INFO_EXCEPTIONS;
            p[1] = 0x0a;
            if !changeable {
                // DEXCPT: we report no informational exceptions.
                p[2] = 0x08;
            }
            p
        }
        _ => unreachable!("only known pages are built"),
    }
}

/// Builds MODE SENSE parameter data (not yet cut to the allocation length).
#[allow(clippy::too_many_arguments)]
pub(crate) fn sense(
    st: &ModeState,
    unit: &UnitShape,
    ten: bool,
    dbd: bool,
    llbaa: bool,
    pc: PageControl,
    page_code: u8,
    subpage: u8,
) -> Result<Vec<u8>, SenseReason> {
    let codes: Vec<u8> = match (page_code, subpage) {
        (PAGE_ALL, 0x00 | 0xff) => PAGES.to_vec(),
        (c, 0x00) if PAGES.contains(&c) => vec![c],
        (c, _) if PAGES.contains(&c) || c == PAGE_ALL => {
            return Err(SenseReason::InvalidFieldInCdb(Field::byte(3)));
        }
        _ => return Err(SenseReason::InvalidFieldInCdb(Field::bit(2, 5))),
    };
    // DPOFUA: DPO and FUA are supported (SBC-3 §6.4.1).
    let dev_specific = 0x10 | if unit.write_protected || st.swp { 0x80 } else { 0 };
    let long = ten && llbaa;
    let mut bd = Vec::new();
    if !dbd {
        if long {
            bd.extend_from_slice(&unit.blocks.to_be_bytes());
            bd.extend_from_slice(&[0; 4]);
            bd.extend_from_slice(&unit.block_size.to_be_bytes());
        } else {
            let n = u32::try_from(unit.blocks).unwrap_or(u32::MAX);
            bd.extend_from_slice(&n.to_be_bytes());
            bd.push(0);
            bd.extend_from_slice(&unit.block_size.to_be_bytes()[1..]);
        }
    }
    let mut out = if ten {
        let mut h = vec![0, 0, 0, dev_specific, u8::from(long), 0, 0, 0];
        h[6..8].copy_from_slice(&(bd.len() as u16).to_be_bytes());
        h
    } else {
        vec![0, 0, dev_specific, bd.len() as u8]
    };
    out.extend_from_slice(&bd);
    for c in codes {
        out.extend_from_slice(&page(c, pc, st, unit));
    }
    if ten {
        let n = (out.len() - 2) as u16;
        out[0..2].copy_from_slice(&n.to_be_bytes());
    } else {
        out[0] = (out.len() - 1) as u8;
    }
    Ok(out)
}

/// Applies a MODE SELECT parameter list; returns the new state. Nothing is
/// applied unless the whole list is valid. Every change is saved, so SP
/// makes no difference.
pub(crate) fn select(st: &ModeState, unit: &UnitShape, ten: bool, data: &[u8]) -> Result<ModeState, SenseReason> {
    if data.is_empty() {
        return Ok(*st);
    }
    let (hdr, bd_len, long) = if ten {
        if data.len() < 8 {
            return Err(SenseReason::ParameterListLength);
        }
        (8, usize::from(u16::from_be_bytes([data[6], data[7]])), data[4] & 0x01 != 0)
    } else {
        if data.len() < 4 {
            return Err(SenseReason::ParameterListLength);
        }
        (4, usize::from(data[3]), false)
    };
    let bd_size = if long { 16 } else { 8 };
    if bd_len % bd_size != 0 {
        return Err(SenseReason::InvalidFieldInParameterList(Field::byte(if ten { 6 } else { 3 } as u16)));
    }
    if data.len() < hdr + bd_len {
        return Err(SenseReason::ParameterListLength);
    }
    for i in 0..bd_len / bd_size {
        // Only the block length matters; we cannot change it.
        let at = hdr + i * bd_size + if long { 12 } else { 5 };
        let len_bytes = &data[at..hdr + (i + 1) * bd_size];
        let len = len_bytes.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b));
        if len != 0 && len != unit.block_size {
            return Err(SenseReason::InvalidFieldInParameterList(Field::byte(at as u16)));
        }
    }
    let mut next = *st;
    let mut pos = hdr + bd_len;
    while pos < data.len() {
        if data.len() - pos < 2 {
            return Err(SenseReason::ParameterListLength);
        }
        if data[pos] & 0x40 != 0 {
            // Sub-page format: we have no sub-pages.
            return Err(SenseReason::InvalidFieldInParameterList(Field::bit(pos as u16, 6)));
        }
        let code = data[pos] & 0x3f;
        if !PAGES.contains(&code) {
            return Err(SenseReason::InvalidFieldInParameterList(Field::byte(pos as u16)));
        }
        let current = page(code, PageControl::Current, &next, unit);
        let changeable = page(code, PageControl::Changeable, &next, unit);
        if usize::from(data[pos + 1]) != current.len() - 2 {
            return Err(SenseReason::InvalidFieldInParameterList(Field::byte(pos as u16 + 1)));
        }
        let end = pos + current.len();
        if end > data.len() {
            return Err(SenseReason::ParameterListLength);
        }
        let given = &data[pos..end];
        for i in 2..current.len() {
            let bad = (given[i] ^ current[i]) & !changeable[i];
            if bad != 0 {
                let bit = 7 - bad.leading_zeros() as u8;
                return Err(SenseReason::InvalidFieldInParameterList(Field::bit((pos + i) as u16, bit)));
            }
        }
        match code {
            PAGE_CACHING => next.wce = given[2] & 0x04 != 0,
            PAGE_CONTROL => {
                next.d_sense = given[2] & 0x04 != 0;
                next.swp = given[4] & 0x08 != 0;
            }
            _ => {}
        }
        pos = end;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: UnitShape = UnitShape {
        blocks: 2048,
        block_size: 512,
        write_protected: false,
        swp_changeable: true,
        write_cache: WriteCache::Initiator,
    };

    #[test]
    fn all_pages_six_byte_layout() {
        let d = sense(&ModeState::default(), &UNIT, false, false, false, PageControl::Current, PAGE_ALL, 0).unwrap();
        assert_eq!(d[0] as usize, d.len() - 1);
        assert_eq!(d[2], 0x10);
        assert_eq!(d[3], 8);
        assert_eq!(&d[4..8], &2048u32.to_be_bytes());
        assert_eq!(&d[9..12], &[0, 2, 0]);
        assert_eq!(d[12], PAGE_CACHING);
        assert_eq!(d.len(), 12 + 20 + 12 + 12);
    }

    #[test]
    fn ten_byte_long_lba_descriptor() {
        let d = sense(&ModeState::default(), &UNIT, true, false, true, PageControl::Current, PAGE_CONTROL, 0).unwrap();
        assert_eq!(u16::from_be_bytes([d[0], d[1]]) as usize, d.len() - 2);
        assert_eq!(d[4], 1);
        assert_eq!(u16::from_be_bytes([d[6], d[7]]), 16);
        assert_eq!(d[24], PAGE_CONTROL);
    }

    #[test]
    fn saved_values_are_the_current_ones_and_unknown_pages_are_refused() {
        let st = ModeState { wce: false, d_sense: true, swp: false };
        assert_eq!(
            sense(&st, &UNIT, false, true, false, PageControl::Saved, PAGE_ALL, 0),
            sense(&st, &UNIT, false, true, false, PageControl::Current, PAGE_ALL, 0)
        );
        assert!(matches!(
            sense(&st, &UNIT, false, true, false, PageControl::Current, 0x19, 0),
            Err(SenseReason::InvalidFieldInCdb(_))
        ));
    }

    #[test]
    fn select_sets_d_sense_and_swp_and_rejects_unchangeable_bits() {
        let st = ModeState::default();
        let mut pl = vec![0, 0, 0, 0];
        let mut ctl = page(PAGE_CONTROL, PageControl::Current, &st, &UNIT);
        ctl[2] |= 0x04;
        ctl[4] |= 0x08;
        pl.extend_from_slice(&ctl);
        let next = select(&st, &UNIT, false, &pl).unwrap();
        assert!(next.d_sense && next.swp && !next.wce);
        pl[4 + 3] ^= 0x10; // QAM is not changeable
        assert_eq!(select(&st, &UNIT, false, &pl), Err(SenseReason::InvalidFieldInParameterList(Field::bit(7, 4))));
    }

    #[test]
    fn select_checks_block_descriptor_and_lengths() {
        let st = ModeState::default();
        let pl = [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
        assert!(matches!(select(&st, &UNIT, false, &pl), Err(SenseReason::InvalidFieldInParameterList(_))));
        let pl = [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x02, 0, PAGE_CACHING, 0x12, 0];
        assert_eq!(select(&st, &UNIT, false, &pl), Err(SenseReason::ParameterListLength));
    }

    #[test]
    fn wce_follows_the_policy_and_only_the_initiator_policy_lets_it_change() {
        let caching = |policy: WriteCache, st: &ModeState, pc: PageControl| {
            let unit = UnitShape { write_cache: policy, ..UNIT };
            sense(st, &unit, false, true, false, pc, PAGE_CACHING, 0).unwrap()[4 + 2] & 0x04
        };
        for (policy, wce) in
            [(WriteCache::WriteThrough, 0), (WriteCache::WriteBack, 0x04), (WriteCache::Initiator, 0x04)]
        {
            let st = ModeState::initial(policy);
            assert_eq!(caching(policy, &st, PageControl::Current), wce, "{policy}");
            assert_eq!(caching(policy, &st, PageControl::Default), wce, "{policy}");
            let changeable = caching(policy, &st, PageControl::Changeable);
            assert_eq!(changeable != 0, policy == WriteCache::Initiator, "{policy}");
            // Turning WCE over is refused unless the policy lets the initiator choose.
            let unit = UnitShape { write_cache: policy, ..UNIT };
            let mut pl = vec![0, 0, 0, 0];
            let mut cache = page(PAGE_CACHING, PageControl::Current, &st, &unit);
            cache[2] ^= 0x04;
            pl.extend_from_slice(&cache);
            assert_eq!(select(&st, &unit, false, &pl).is_ok(), policy == WriteCache::Initiator, "{policy}");
        }
    }
}
